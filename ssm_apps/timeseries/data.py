"""``TimeSeriesDataModule``: sliding windows over a benchmark CSV (ETT, Exchange, Weather, ...).

The CSV layout of the long-horizon forecasting benchmarks: a ``date`` column of timestamps and
one numeric column per variate. Every variate is both input and target (the multivariate 'M'
setting); the ``target`` column is moved to the end, as the benchmarks do. Rows are split into
train/val/test by fixed borders (the ETT protocol) or by 70/10/20 ratios (the other data sets);
values are standardised with the mean and standard deviation of the training rows.
"""
from __future__ import annotations

import csv
import warnings
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..training.checks import check_choice, check_int
from .time_features import infer_freq, normalize_freq, time_features

__all__ = ["TimeSeriesDataModule", "WindowDataset", "read_benchmark_csv", "split_borders"]

Split = Literal["ett_hour", "ett_minute", "ratio"]
Item = tuple[Tensor, Tensor, Tensor, Tensor]  # x, x_mark, y, y_mark

BUNDLED_CSV = "ETTh1.csv"
_ETT_MONTH_HOURS = 30 * 24  # a benchmark "month" of hourly rows
_MISSING_TOKENS = {"", "nan", "na", "n/a", "null", "none", "-nan"}
# stage names accepted by window_dates()/dataset() -> split
_STAGE_TO_SPLIT = {"fit": "train", "train": "train", "validate": "val", "val": "val",
                   "test": "test", "predict": "test"}


# --------------------------------------------------------------------------------------- reading
def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh, skipinitialspace=True), None)
    if not header or all(not h.strip() for h in header):
        raise ValueError(f"{path}: the file is empty or has no header row")
    return header


def _first_long_line(path: Path, n_fields: int) -> int | None:
    """1-based line number of the first row with more fields than the header, if any."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        for number, row in enumerate(csv.reader(fh, skipinitialspace=True), start=1):
            if len(row) > n_fields:
                return number
    return None


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _parse_dates(path: Path, raw: pd.Series) -> pd.DatetimeIndex:
    """Timestamps of the ``date`` column; names the first row that does not parse."""
    blank = raw.str.strip().eq("").to_numpy()
    with warnings.catch_warnings():  # "could not infer format" when the first row is bad
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(raw.where(~blank), errors="coerce")
        bad = parsed.isna().to_numpy()
        if bad.any():  # the inferred format may not fit every row: retry those one by one
            idx = np.flatnonzero(bad & ~blank)
            if len(idx):
                retry = pd.to_datetime(raw.iloc[idx], errors="coerce", format="mixed")
                parsed.iloc[idx] = retry.to_numpy()
            bad = parsed.isna().to_numpy()
    if bad.any():
        row = _first_bad(bad)
        raise ValueError(f"{path}: column 'date' has an unparseable timestamp {raw.iloc[row]!r} "
                         f"in row {row} (file line {row + 2})")
    return pd.DatetimeIndex(parsed)


def _parse_numbers(path: Path, name: str, raw: pd.Series) -> np.ndarray:
    """Float64 values of one variate column; names the first empty or non-numeric row."""
    text = raw.fillna("").astype(str).str.strip()
    missing = text.str.lower().isin(_MISSING_TOKENS).to_numpy()
    values = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = _first_bad(bad)
        where = f"in row {row} (file line {row + 2})"
        if missing[row]:
            raise ValueError(f"{path}: column {name!r} has a missing value (empty or NaN cell) {where}")
        raise ValueError(f"{path}: column {name!r} has a non-numeric (or infinite) value {raw.iloc[row]!r} {where}")
    return values


def read_benchmark_csv(path: str | Path) -> tuple[pd.DatetimeIndex, pd.DataFrame]:
    """Reads and checks a benchmark CSV: returns the ``date`` column and the variates (float64).

    Raises FileNotFoundError for a missing file and ValueError (naming the file, and the column
    and first bad row where there is one) for: no header, duplicate column names, no ``date``
    column, no variate column, unparseable timestamps, empty/NaN cells, non-numeric values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"time-series CSV not found: {path}")
    header = _read_header(path)
    blank = [i for i, h in enumerate(header) if not h.strip()]
    if blank:
        raise ValueError(f"{path}: header column {blank[0]} (counting from 0) has no name; header: {header}")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ValueError(f"{path}: duplicate column names {dupes}; every column needs its own name")
    if "date" not in header:
        raise ValueError(f"{path}: no 'date' column; the header has columns {header} "
                         f"(expected 'date' and one numeric column per variate)")
    if len(header) < 2:
        raise ValueError(f"{path}: no variate columns beside 'date'")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # extra fields in the first row
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, index_col=False,
                                encoding="utf-8-sig", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError) as err:
        line = _first_long_line(path, len(header))
        where = f" (line {line} has more fields than the {len(header)} header columns)" if line else ""
        raise ValueError(f"{path}: not a well-formed CSV{where}: {err}") from err
    if list(frame.columns) != header:  # defensive: pandas renames some headers (e.g. blanks)
        raise ValueError(f"{path}: could not read the header {header} as column names")
    if len(frame) == 0:
        raise ValueError(f"{path}: the file has a header but no data rows")
    dates = _parse_dates(path, frame["date"])
    variates = [c for c in header if c != "date"]
    data = pd.DataFrame({c: _parse_numbers(path, c, frame[c]) for c in variates}, columns=variates)
    return dates, data


# ---------------------------------------------------------------------------------------- splits
def _ratio_sizes(n_rows: int) -> tuple[int, int, int]:
    n_train = int(n_rows * 0.7)
    n_test = int(n_rows * 0.2)
    return n_train, n_rows - n_train - n_test, n_test


def _ratio_ok(n_rows: int, lookback: int, horizon: int) -> bool:
    n_train, n_val, n_test = _ratio_sizes(n_rows)
    return n_train >= lookback + horizon and n_val >= horizon and n_test >= horizon


def split_borders(split: str, n_rows: int, lookback: int, horizon: int) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, stop)`` of ``train``, ``val`` and ``test`` (val/test start ``lookback``
    rows early so that their first window forecasts the split's first row). Raises ValueError when
    the file is too short or a split would hold no window."""
    if split in ("ett_hour", "ett_minute"):
        month = _ETT_MONTH_HOURS * (4 if split == "ett_minute" else 1)
        b1, b2, b3 = 12 * month, 16 * month, 20 * month
        if n_rows < b3:
            raise ValueError(f"split {split!r} needs at least {b3} rows (train {b1}, val {b2 - b1}, "
                             f"test {b3 - b2}); the file has {n_rows}")
        if lookback + horizon > b1:
            raise ValueError(f"split {split!r}: lookback + horizon = {lookback + horizon} leaves no training "
                             f"window in the {b1} training rows")
        if horizon > b2 - b1:
            raise ValueError(f"split {split!r}: horizon = {horizon} leaves no window in the {b2 - b1} "
                             f"validation/test rows")
        return {"train": (0, b1), "val": (b1 - lookback, b2), "test": (b2 - lookback, b3)}
    if split == "ratio":
        if not _ratio_ok(n_rows, lookback, horizon):
            need = max(1, int(max((lookback + horizon) / 0.7, horizon / 0.2, horizon / 0.1)) - 20)
            while not _ratio_ok(need, lookback, horizon):
                need += 1
            raise ValueError(f"split 'ratio' (70/10/20) with lookback={lookback} and horizon={horizon} needs at "
                             f"least {need} rows for one window in each of train/val/test; the file has {n_rows}")
        n_train, n_val, n_test = _ratio_sizes(n_rows)
        return {"train": (0, n_train), "val": (n_train - lookback, n_train + n_val),
                "test": (n_rows - n_test - lookback, n_rows)}
    raise ValueError(f"unknown split {split!r}; choose 'ett_hour', 'ett_minute' or 'ratio'")


# --------------------------------------------------------------------------------------- dataset
class WindowDataset(Dataset):
    """Sliding windows over one split: item ``i`` is ``(x, x_mark, y, y_mark)`` with ``x`` the rows
    ``[i, i + lookback)`` and ``y`` the rows ``[i + lookback, i + lookback + horizon)``."""

    def __init__(self, values: Tensor, marks: Tensor, dates: pd.DatetimeIndex, lookback: int, horizon: int) -> None:
        if not (len(values) == len(marks) == len(dates)):
            raise ValueError("WindowDataset: values, marks and dates must have the same number of rows")
        self.values, self.marks, self.dates = values, marks, dates
        self.lookback, self.horizon = lookback, horizon

    def __len__(self) -> int:
        return max(0, len(self.values) - self.lookback - self.horizon + 1)

    def _start(self, index: int) -> int:
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"window index {index} out of range for {n} windows")
        return i

    def __getitem__(self, index: int) -> Item:
        s = self._start(index)
        m = s + self.lookback
        e = m + self.horizon
        return self.values[s:m], self.marks[s:m], self.values[m:e], self.marks[m:e]

    def horizon_dates(self, index: int) -> pd.DatetimeIndex:
        m = self._start(index) + self.lookback
        return self.dates[m:m + self.horizon]


# ----------------------------------------------------------------------------------- data module
class TimeSeriesDataModule(L.LightningDataModule):
    """Train/val/test/predict windows of a benchmark CSV, standardised on the training rows.

    Batches are ``(x, x_mark, y, y_mark)``: float32 tensors (B, lookback, N), (B, lookback, F),
    (B, horizon, N), (B, horizon, F), with N variates (``columns``, target last) and F time
    features (``time_features.time_features`` for ``freq``). Predict uses the test windows.

    Args:
        data_path: the CSV; ``None`` uses the ETTh1.csv bundled with the package.
        split: ``ett_hour`` (12/4/4 months of hourly rows: [0, 8640), [8640, 11520), [11520, 14400)),
            ``ett_minute`` (the same at 15 minutes: borders x4) or ``ratio`` (70% / 10% / 20%).
            Validation and test windows start ``lookback`` rows before their split.
        lookback: input length (rows per window fed to the model).
        horizon: forecast length.
        target: the target variate; kept as the last column.
        freq: pandas offset alias of the sampling frequency ('h', '15min', 'd', ...); ``None``
            infers it from the median spacing of the dates.
        batch_size: windows per batch.
        num_workers: DataLoader worker processes.
        scale: standardise with the training rows' mean and std (ddof=0).
        drop_last_train: drop the last incomplete training batch.
    """

    def __init__(
        self,
        data_path: str | None = None,
        split: Split = "ett_hour",
        lookback: int = 96,
        horizon: int = 96,
        target: str = "OT",
        freq: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        scale: bool = True,
        drop_last_train: bool = True,
    ) -> None:
        super().__init__()
        for name, value, low in (("lookback", lookback, 1), ("horizon", horizon, 1),
                                 ("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
            check_int("TimeSeriesDataModule", name, value, low)
        check_choice("TimeSeriesDataModule", "split", split, ("ett_hour", "ett_minute", "ratio"))
        if freq is not None:
            normalize_freq(freq)  # fail early on an unsupported frequency
        self.save_hyperparameters()
        self.data_path = data_path
        self.split = split
        self.lookback, self.horizon = lookback, horizon
        self.target = target
        self.batch_size, self.num_workers = batch_size, num_workers
        self.scale, self.drop_last_train = scale, drop_last_train
        self._requested_freq = freq
        self._ready = False

    # ----------------------------------------------------------------------------- setup
    def prepare_data(self) -> None:
        """Nothing to do: the data is a local file (never downloaded)."""

    def setup(self, stage: str | None = None) -> None:
        """Reads, checks, scales and windows the CSV (all splits at once; later calls do nothing)."""
        if self._ready:
            return
        with ExitStack() as stack:
            if self.data_path is None:
                res = resources.files("ssm_apps.timeseries").joinpath("data", BUNDLED_CSV)
                path = stack.enter_context(resources.as_file(res))
            else:
                path = Path(self.data_path).expanduser()
            dates, frame = read_benchmark_csv(path)
        if self.target not in frame.columns:
            raise ValueError(f"{path}: target column {self.target!r} not found; the variate columns are "
                             f"{list(frame.columns)}")
        columns = [c for c in frame.columns if c != self.target] + [self.target]
        values = frame[columns].to_numpy(np.float64)
        borders = split_borders(self.split, len(values), self.lookback, self.horizon)

        if self.scale:
            start, stop = borders["train"]
            mean = values[start:stop].mean(axis=0)
            std = values[start:stop].std(axis=0)  # ddof=0, as sklearn's StandardScaler
            std = np.where(std == 0.0, 1.0, std)  # constant columns: like sklearn, scale 1
        else:
            mean, std = np.zeros(len(columns)), np.ones(len(columns))
        scaled = torch.from_numpy(((values - mean) / std).astype(np.float32))

        freq = normalize_freq(self._requested_freq) if self._requested_freq is not None else infer_freq(dates)
        marks = torch.from_numpy(time_features(dates, freq))

        self.mean_, self.std_ = mean, std
        self._columns, self._freq = columns, freq
        self.borders = borders
        self.datasets = {name: WindowDataset(scaled[a:b], marks[a:b], dates[a:b], self.lookback, self.horizon)
                         for name, (a, b) in borders.items()}
        self.resolved_path = str(path)
        self._ready = True

    def _check_ready(self) -> None:
        if not self._ready:
            raise RuntimeError("TimeSeriesDataModule: call setup() first")

    # ------------------------------------------------------------------------ properties
    @property
    def columns(self) -> list[str]:
        """Variate names in model order (the CSV's order, ``target`` moved last)."""
        self._check_ready()
        return list(self._columns)

    @property
    def n_variates(self) -> int:
        self._check_ready()
        return len(self._columns)

    @property
    def n_time_features(self) -> int:
        self._check_ready()
        return int(self.datasets["train"].marks.shape[1])

    @property
    def freq(self) -> str:
        """The normalised frequency of the time features: one of 's', 't', 'h', 'd', 'b', 'w', 'm'."""
        self._check_ready()
        return self._freq

    def dataset(self, stage: str) -> WindowDataset:
        """The windows of ``stage``: 'fit'/'train', 'validate'/'val', 'test' or 'predict' (= test)."""
        self._check_ready()
        if stage not in _STAGE_TO_SPLIT:
            raise ValueError(f"unknown stage {stage!r}; choose one of {sorted(_STAGE_TO_SPLIT)}")
        return self.datasets[_STAGE_TO_SPLIT[stage]]

    def window_dates(self, stage: str, index: int) -> pd.DatetimeIndex:
        """Timestamps of the ``horizon`` forecast rows of window ``index`` of ``stage``."""
        return self.dataset(stage).horizon_dates(index)

    # --------------------------------------------------------------------------- scaling
    def _affine(self, x: Tensor | np.ndarray, inverse: bool) -> Tensor | np.ndarray:
        self._check_ready()
        if x.shape[-1] != self.n_variates:
            raise ValueError(f"TimeSeriesDataModule: the last dimension must be the {self.n_variates} variates "
                             f"{self._columns}; got shape {tuple(x.shape)}")
        if isinstance(x, Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            mean = torch.as_tensor(self.mean_, dtype=dtype, device=x.device)
            std = torch.as_tensor(self.std_, dtype=dtype, device=x.device)
            x = x.to(dtype)
            return x * std + mean if inverse else (x - mean) / std
        x = np.asarray(x)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        x64 = x.astype(np.float64)
        out = x64 * self.std_ + self.mean_ if inverse else (x64 - self.mean_) / self.std_
        return out.astype(dtype)

    def transform(self, x: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """Standardises values in the CSV's units (last dimension = ``columns``)."""
        return self._affine(x, inverse=False)

    def inverse_transform(self, x: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """Back to the CSV's units: ``x * std_ + mean_`` over the last dimension (= ``columns``)."""
        return self._affine(x, inverse=True)

    # ------------------------------------------------------------------------ dataloaders
    def _loader(self, split: str, shuffle: bool, drop_last: bool) -> DataLoader:
        self._check_ready()
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle,
                          drop_last=drop_last, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, drop_last=self.drop_last_train)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, drop_last=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, drop_last=False)
