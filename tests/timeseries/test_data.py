"""TimeSeriesDataModule and the time features, against computations written here with pandas/numpy.

Real data: ``../shared/data/timeseries`` beside the checkout (ETTh1.csv, exchange_rate.csv);
the tests that need it skip only when that folder is absent. Input errors use small CSVs in tmp_path.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ssm_apps.timeseries.data import TimeSeriesDataModule
from ssm_apps.timeseries.time_features import infer_freq, time_features
from tests.helpers import shared_path

L_, H_ = 96, 96  # the benchmark's lookback and horizon


def data_file(name: str) -> Path:
    """A benchmark CSV from ../shared/data/timeseries (see its README)."""
    return shared_path("data", "timeseries", name)


@pytest.fixture(scope="module")
def etth1_raw() -> pd.DataFrame:
    return pd.read_csv(data_file("ETTh1.csv"))


@pytest.fixture(scope="module")
def etth1(etth1_raw) -> TimeSeriesDataModule:
    dm = TimeSeriesDataModule(data_path=str(data_file("ETTh1.csv")), split="ett_hour", lookback=L_, horizon=H_)
    dm.setup("fit")
    return dm


def hourly_marks(dates: pd.Series) -> np.ndarray:
    """The hourly timeF features, written out here: hour, weekday, day of month, day of year."""
    return np.stack([dates.dt.hour / 23 - 0.5, dates.dt.day_of_week / 6 - 0.5,
                     (dates.dt.day - 1) / 30 - 0.5, (dates.dt.day_of_year - 1) / 365 - 0.5], axis=1)


# ------------------------------------------------------------------------------------- ETTh1
def test_etth1_columns_counts_and_scaler(etth1, etth1_raw):
    assert etth1.columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert etth1.n_variates == 7 and etth1.n_time_features == 4 and etth1.freq == "h"
    counts = {s: len(etth1.dataset(s)) for s in ("fit", "validate", "test", "predict")}
    assert counts == {"fit": 8640 - 96 - 96 + 1, "validate": 2785, "test": 2785, "predict": 2785}
    train = etth1_raw.iloc[:8640].drop(columns="date")
    np.testing.assert_allclose(etth1.mean_, train.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(etth1.std_, train.std(ddof=0).to_numpy(), rtol=1e-12)


def test_etth1_first_and_last_windows_of_each_split(etth1, etth1_raw):
    values = etth1_raw.drop(columns="date").to_numpy(np.float64)
    mean, std = values[:8640].mean(0), values[:8640].std(0)
    scaled = (values - mean) / std
    marks = hourly_marks(pd.to_datetime(etth1_raw["date"]))
    # first row of x for window 0 and the last window of each split
    expected_starts = {"fit": (0, 8640 - 192), "validate": (8640 - 96, 11520 - 192), "test": (11520 - 96, 14400 - 192)}
    for stage, starts in expected_starts.items():
        ds = etth1.dataset(stage)
        for index, start in zip((0, len(ds) - 1), starts):
            x, x_mark, y, y_mark = ds[index]
            assert [t.dtype for t in (x, x_mark, y, y_mark)] == [torch.float32] * 4
            assert x.shape == (96, 7) and y.shape == (96, 7) and x_mark.shape == (96, 4) and y_mark.shape == (96, 4)
            np.testing.assert_allclose(x.numpy(), scaled[start:start + 96], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(y.numpy(), scaled[start + 96:start + 192], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(x_mark.numpy(), marks[start:start + 96], atol=1e-6)
            np.testing.assert_allclose(y_mark.numpy(), marks[start + 96:start + 192], atol=1e-6)
            dates = etth1.window_dates(stage, index)
            assert list(dates) == list(pd.to_datetime(etth1_raw["date"][start + 96:start + 192]))
    assert etth1.window_dates("test", -1)[-1] == pd.Timestamp(etth1_raw["date"][14399])
    with pytest.raises(IndexError):
        etth1.dataset("test")[2785]


def test_etth1_dataloaders_and_inverse_transform(etth1, etth1_raw):
    train = etth1.train_dataloader()
    assert len(train) == 8449 // 32  # drop_last
    batch = next(iter(train))
    assert isinstance(batch, (tuple, list)) and len(batch) == 4
    assert [tuple(t.shape) for t in batch] == [(32, 96, 7), (32, 96, 4), (32, 96, 7), (32, 96, 4)]
    assert len(etth1.val_dataloader()) == len(etth1.test_dataloader()) == len(etth1.predict_dataloader()) == -(-2785 // 32)
    pred = list(etth1.predict_dataloader())
    x = torch.cat([b[0] for b in pred])
    assert x.shape == (2785, 96, 7)  # every test window, in order, no drop
    torch.testing.assert_close(x[0], etth1.dataset("test")[0][0])
    torch.testing.assert_close(x[-1], etth1.dataset("test")[-1][0])
    raw = etth1_raw.drop(columns="date").to_numpy(np.float64)
    y_units = etth1.inverse_transform(torch.cat([b[2] for b in pred[:2]]))
    assert isinstance(y_units, torch.Tensor) and y_units.dtype == torch.float32
    np.testing.assert_allclose(y_units[0].numpy(), raw[11520:11616], rtol=1e-5, atol=1e-4)
    y_np = etth1.inverse_transform(pred[0][2].numpy())
    assert isinstance(y_np, np.ndarray) and y_np.dtype == np.float32
    np.testing.assert_allclose(y_np[1], raw[11521:11617], rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="7 variates"):
        etth1.inverse_transform(np.zeros((2, 3)))
    loose = TimeSeriesDataModule(data_path=str(data_file("ETTh1.csv")), drop_last_train=False, batch_size=1000)
    loose.setup()
    assert len(loose.train_dataloader()) == 9


def test_setup_is_idempotent_and_properties_need_setup(etth1):
    datasets = etth1.datasets
    etth1.setup("test")
    etth1.setup("predict")
    assert etth1.datasets is datasets
    fresh = TimeSeriesDataModule()
    with pytest.raises(RuntimeError, match="setup"):
        fresh.columns
    fresh.prepare_data()  # does nothing, downloads nothing


def test_bundled_default_is_the_shared_etth1(etth1):
    bundled = TimeSeriesDataModule()  # data_path None -> the copy inside the package
    bundled.setup()
    np.testing.assert_array_equal(bundled.mean_, etth1.mean_)
    np.testing.assert_array_equal(bundled.std_, etth1.std_)
    for stage in ("fit", "validate", "test"):
        a, b = bundled.dataset(stage), etth1.dataset(stage)
        assert len(a) == len(b)
        for got, want in zip(a[len(a) // 2], b[len(b) // 2]):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    bundled_file = Path(bundled.resolved_path)
    assert bundled_file.read_bytes() == data_file("ETTh1.csv").read_bytes()


def test_scale_false_gives_raw_values(etth1_raw):
    dm = TimeSeriesDataModule(data_path=str(data_file("ETTh1.csv")), scale=False, lookback=24, horizon=12)
    dm.setup()
    x, _, y, _ = dm.dataset("test")[0]
    raw = etth1_raw.drop(columns="date").to_numpy(np.float32)
    np.testing.assert_array_equal(x.numpy(), raw[11520 - 24:11520])
    np.testing.assert_array_equal(y.numpy(), raw[11520:11532])


# ---------------------------------------------------------------------------- other splits
def test_ratio_split_on_exchange_rate():
    path = data_file("exchange_rate.csv")
    raw = pd.read_csv(path)
    assert len(raw) == 7588
    dm = TimeSeriesDataModule(data_path=str(path), split="ratio", lookback=96, horizon=96, target="OT")
    dm.setup()
    assert dm.freq == "d" and dm.n_time_features == 3
    assert dm.columns == ["0", "1", "2", "3", "4", "5", "6", "OT"]
    # by hand: n_train = int(7588 * .7) = 5311, n_test = int(7588 * .2) = 1517, n_val = 760
    assert dm.borders == {"train": (0, 5311), "val": (5311 - 96, 6071), "test": (7588 - 1517 - 96, 7588)}
    assert [len(dm.dataset(s)) for s in ("fit", "validate", "test")] == [5311 - 191, 760 - 95, 1517 - 95]
    values = raw.drop(columns="date").to_numpy(np.float64)
    mean, std = values[:5311].mean(0), values[:5311].std(0)
    np.testing.assert_allclose(dm.mean_, mean, rtol=1e-12)
    np.testing.assert_allclose(dm.std_, std, rtol=1e-12)
    x, _, y, _ = dm.dataset("validate")[0]
    np.testing.assert_allclose(x.numpy(), (values[5215:5311] - mean) / std, rtol=1e-5, atol=1e-5)
    x, _, y, _ = dm.dataset("test")[-1]
    np.testing.assert_allclose(y.numpy(), (values[7588 - 96:] - mean) / std, rtol=1e-5, atol=1e-5)
    assert dm.window_dates("test", 0)[0] == pd.Timestamp(raw["date"][6071])


def write_minutely(path: Path, n_rows: int) -> Path:
    dates = pd.date_range("2016-07-01", periods=n_rows, freq="15min")
    frame = pd.DataFrame({"date": dates.strftime("%Y-%m-%d %H:%M:%S"), "OT": 2.0 * np.arange(n_rows),
                          "a": np.arange(n_rows, dtype=np.float64)})
    frame.to_csv(path, index=False)
    return path


def test_ett_minute_borders_on_synthetic_15min_csv(tmp_path):
    path = write_minutely(tmp_path / "ettm.csv", 57600 + 50)
    dm = TimeSeriesDataModule(data_path=str(path), split="ett_minute", lookback=8, horizon=4, scale=False)
    dm.setup()
    assert dm.columns == ["a", "OT"]  # target moved last
    assert dm.freq == "t" and dm.n_time_features == 5
    assert [len(dm.dataset(s)) for s in ("fit", "validate", "test")] == [34560 - 11, 11520 - 3, 11520 - 3]
    # column 'a' holds the row number, so each window's first row is its start row
    firsts = {"fit": 0, "validate": 34560 - 8, "test": 46080 - 8}
    for stage, start in firsts.items():
        x, x_mark, y, _ = dm.dataset(stage)[0]
        assert x[:, 0].tolist() == list(range(start, start + 8))
        assert y[:, 1].tolist() == [2.0 * r for r in range(start + 8, start + 12)]
    y = dm.dataset("test")[-1][2]
    assert y[-1, 0].item() == 57599  # rows from 57600 on are unused
    # the first horizon row is 2016-07-01 00:00 + 8 * 15 min = 02:00: minute 0, hour 2, Friday,
    # day 1 of the month, day 183 of the year; the next one is at minute 15
    y_mark = dm.dataset("fit")[0][3].numpy()
    np.testing.assert_allclose(y_mark[0], [-0.5, 2 / 23 - 0.5, 4 / 6 - 0.5, -0.5, 182 / 365 - 0.5], atol=1e-6)
    assert y_mark[1, 0] == pytest.approx(15 / 59 - 0.5, abs=1e-6)
    assert dm.window_dates("fit", 0)[0] == pd.Timestamp("2016-07-01 02:00")


# ---------------------------------------------------------------------------- time features
def test_time_features_of_known_timestamps():
    # 2016-07-01 00:00 is a Friday (weekday 4), day 183 of the leap year 2016
    h = time_features(pd.DatetimeIndex(["2016-07-01 00:00", "2016-12-31 23:00"]), "h")
    assert h.dtype == np.float32 and h.shape == (2, 4)
    np.testing.assert_allclose(h[0], [-0.5, 4 / 6 - 0.5, -0.5, 182 / 365 - 0.5], atol=1e-7)
    # 2016-12-31 is a Saturday, day 31, day 366
    np.testing.assert_allclose(h[1], [0.5, 5 / 6 - 0.5, 0.5, 0.5], atol=1e-7)
    s = time_features(pd.DatetimeIndex(["2017-03-05 13:45:30"]), "s")  # a Sunday, day 64
    np.testing.assert_allclose(s[0], [30 / 59 - 0.5, 45 / 59 - 0.5, 13 / 23 - 0.5, 0.5, 4 / 30 - 0.5, 63 / 365 - 0.5],
                               atol=1e-7)
    t = time_features(pd.DatetimeIndex(["2017-03-05 13:45:30"]), "15min")
    np.testing.assert_allclose(t[0], s[0, 1:], atol=0)
    d = time_features(pd.DatetimeIndex(["2020-01-01"]), "D")  # a Wednesday
    np.testing.assert_allclose(d[0], [2 / 6 - 0.5, -0.5, -0.5], atol=1e-7)
    np.testing.assert_array_equal(time_features(pd.DatetimeIndex(["2020-01-01"]), "b"), d)
    # 2021-01-03 is in ISO week 53 (of 2020)
    w = time_features(pd.DatetimeIndex(["2021-01-03", "2021-01-04"]), "W-SUN")
    np.testing.assert_allclose(w, [[2 / 30 - 0.5, 0.5], [3 / 30 - 0.5, -0.5]], atol=1e-7)
    m = time_features(pd.DatetimeIndex(["2020-01-31", "2020-12-31"]), "M")
    np.testing.assert_allclose(m, [[-0.5], [0.5]], atol=1e-7)


def test_frequency_aliases_widths_and_errors():
    dates = pd.date_range("2020-01-01", periods=3, freq="h")
    widths = {"h": 4, "H": 4, "1h": 4, "t": 5, "min": 5, "15min": 5, "T": 5, "s": 6, "S": 6, "d": 3, "D": 3,
              "b": 3, "B": 3, "w": 2, "W": 2, "m": 1, "M": 1, "MS": 1, "ME": 1}
    for freq, width in widths.items():
        out = time_features(dates, freq)
        assert out.shape == (3, width), freq
        assert out.min() >= -0.5 and out.max() <= 0.5
    for bad in ("q", "Y", "2x", "H-SUN", ""):
        with pytest.raises(ValueError, match=r"unsupported frequency .*supported: 's'.*'h' \(hourly\)"):
            time_features(dates, bad)


@pytest.mark.parametrize("step, want", [("10s", "s"), ("15min", "t"), ("h", "h"), ("D", "d"),
                                        ("W", "w"), ("MS", "m")])
def test_infer_freq(step, want):
    assert infer_freq(pd.date_range("2020-01-01", periods=20, freq=step)) == want


def test_infer_freq_uses_the_median_spacing():
    dates = pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07"])  # business days
    assert infer_freq(dates) == "d"
    with pytest.raises(ValueError, match="at least 2"):
        infer_freq(dates[:1])


# ----------------------------------------------------------------------------- input errors
def write(tmp_path: Path, text: str, name: str = "bad.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD_HEAD = "date,a,OT\n"
GOOD_ROWS = "2020-01-01 00:00:00,1.0,2.0\n2020-01-01 01:00:00,1.5,2.5\n"


@pytest.mark.parametrize("text, pattern", [
    ("when,a,OT\n2020-01-01,1,2\n", r"bad\.csv: no 'date' column; the header has columns \['when', 'a', 'OT'\]"),
    (GOOD_HEAD + GOOD_ROWS + "not a date,1,2\n", r"bad\.csv: column 'date' has an unparseable timestamp 'not a date' in row 2"),
    (GOOD_HEAD + GOOD_ROWS + ",1,2\n", r"bad\.csv: column 'date' has an unparseable timestamp '' in row 2"),
    ("date,a,OT,a\n2020-01-01,1,2,3\n", r"bad\.csv: duplicate column names \['a'\]"),
    (GOOD_HEAD + GOOD_ROWS + "2020-01-01 02:00:00,abc,2\n", r"bad\.csv: column 'a' has a non-numeric \(or infinite\) value 'abc' in row 2 \(file line 4\)"),
    (GOOD_HEAD + "2020-01-01 00:00:00,1,inf\n", r"bad\.csv: column 'OT' has a non-numeric \(or infinite\) value 'inf' in row 0"),
    (GOOD_HEAD + "yesterday,1,2\n" + GOOD_ROWS, r"bad\.csv: column 'date' has an unparseable timestamp 'yesterday' in row 0"),
    (GOOD_HEAD + GOOD_ROWS + "2020-01-01 02:00:00,1,2,3\n", r"bad\.csv: not a well-formed CSV \(line 4 has more fields than the 3 header columns\)"),
    (GOOD_HEAD + "2020-01-01 02:00:00,1,2,3\n", r"bad\.csv: not a well-formed CSV \(line 2 has more fields"),
    ("date,a,\n2020-01-01,1,2\n", r"bad\.csv: header column 2 \(counting from 0\) has no name"),
    (GOOD_HEAD + GOOD_ROWS + "2020-01-01 02:00:00,1,\n", r"bad\.csv: column 'OT' has a missing value \(empty or NaN cell\) in row 2"),
    (GOOD_HEAD + "2020-01-01 00:00:00,NaN,2\n" + GOOD_ROWS, r"bad\.csv: column 'a' has a missing value \(empty or NaN cell\) in row 0"),
    ("", r"bad\.csv: the file is empty"),
    (GOOD_HEAD, r"bad\.csv: the file has a header but no data rows"),
])
def test_csv_errors_name_the_file_column_and_row(tmp_path, text, pattern):
    dm = TimeSeriesDataModule(data_path=write(tmp_path, text), split="ratio", lookback=1, horizon=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clear error, not a warning followed by one
        with pytest.raises(ValueError, match=pattern):
            dm.setup()


def test_missing_file_and_missing_target(tmp_path):
    missing = tmp_path / "nowhere" / "gone.csv"
    with pytest.raises(FileNotFoundError, match=r"not found: .*nowhere/gone\.csv"):
        TimeSeriesDataModule(data_path=str(missing)).setup()
    dm = TimeSeriesDataModule(data_path=write(tmp_path, GOOD_HEAD + GOOD_ROWS), target="load", split="ratio")
    with pytest.raises(ValueError, match=r"bad\.csv: target column 'load' not found; the variate columns are \['a', 'OT'\]"):
        dm.setup()


def test_too_few_rows(tmp_path):
    rows = "".join(f"2020-01-01 {h:02d}:00:00,{h},{h}\n" for h in range(10))
    path = write(tmp_path, GOOD_HEAD + rows)
    with pytest.raises(ValueError, match=r"split 'ett_hour' needs at least 14400 rows .*the file has 10"):
        TimeSeriesDataModule(data_path=path).setup()
    with pytest.raises(ValueError, match=r"split 'ett_minute' needs at least 57600 rows .*the file has 10"):
        TimeSeriesDataModule(data_path=path, split="ett_minute").setup()
    # by hand for lookback 4, horizon 2: 10 rows -> 7/1/2 (val too short); 11 rows -> 7/2/2 fits
    with pytest.raises(ValueError, match=r"split 'ratio' .*lookback=4 and horizon=2 needs at least 11 rows .*the file has 10"):
        TimeSeriesDataModule(data_path=path, split="ratio", lookback=4, horizon=2).setup()
    dm = TimeSeriesDataModule(data_path=write(tmp_path, GOOD_HEAD + rows + "2020-01-01 10:00:00,1,1\n", "ok.csv"),
                              split="ratio", lookback=4, horizon=2)
    dm.setup()
    assert [len(dm.dataset(s)) for s in ("fit", "validate", "test")] == [2, 1, 1]


def test_bad_arguments():
    for name in ("lookback", "horizon", "batch_size"):
        with pytest.raises(ValueError, match=f"'{name}' must be an integer >= 1; got 0"):
            TimeSeriesDataModule(**{name: 0})
    with pytest.raises(ValueError, match="'lookback' must be an integer >= 1; got -3"):
        TimeSeriesDataModule(lookback=-3)
    with pytest.raises(ValueError, match="unknown split 'monthly'"):
        TimeSeriesDataModule(split="monthly")
    with pytest.raises(ValueError, match="unsupported frequency 'q'"):
        TimeSeriesDataModule(freq="q")


def test_built_from_yaml_by_jsonargparse():
    import jsonargparse  # installed with lightning[pytorch-extra] (LightningCLI)

    parser = jsonargparse.ArgumentParser()
    parser.add_class_arguments(TimeSeriesDataModule, "data")
    cfg = parser.parse_string("data:\n  data_path: null\n  split: ratio\n  lookback: 48\n  freq: 1h\n")
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    dm = instantiate(cfg).data
    assert isinstance(dm, TimeSeriesDataModule)
    assert (dm.split, dm.lookback, dm.horizon, dm.data_path) == ("ratio", 48, 96, None)
    with pytest.raises((SystemExit, jsonargparse.ArgumentError)):
        parser.parse_string("data:\n  split: weekly\n")
