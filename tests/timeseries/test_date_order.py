"""Time-series CSVs: dates strictly increasing (or sort: true), no duplicates, gaps reported;
non-finite prediction inputs refused naming the window."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from ssm_apps.timeseries.data import TimeSeriesDataModule, check_finite_windows, read_benchmark_csv


def _csv(tmp_path, dates, name="x.csv"):
    frame = pd.DataFrame({"date": dates, "a": np.arange(len(dates), dtype=float), "OT": np.ones(len(dates))})
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _hours(n, start="2020-01-01"):
    return [str(d) for d in pd.date_range(start, periods=n, freq="h")]


def test_backwards_dates_refused_naming_the_lines(tmp_path):
    dates = _hours(10)
    dates[4], dates[5] = dates[5], dates[4]
    path = _csv(tmp_path, dates)
    with pytest.raises(ValueError) as err:
        read_benchmark_csv(path)
    message = str(err.value)
    assert f"{path}: column 'date' is not increasing: {pd.Timestamp(dates[5])} (file line 7) comes after " \
           f"{pd.Timestamp(dates[4])} (line 6)" in message
    assert "sort: true" in message


def test_reversed_file_is_sorted_on_request(tmp_path):
    dates = _hours(10)
    path = _csv(tmp_path, dates[::-1])
    got_dates, data = read_benchmark_csv(path, sort=True)
    assert list(got_dates) == list(pd.to_datetime(dates))
    np.testing.assert_array_equal(data["a"].to_numpy(), np.arange(10.0)[::-1])  # values moved with their dates


def test_duplicate_dates_refused_even_with_sort(tmp_path):
    dates = _hours(10)
    dates[7] = dates[6]
    path = _csv(tmp_path, dates)
    for sort in (False, True):
        with pytest.raises(ValueError, match=rf"repeats the timestamp {pd.Timestamp(dates[6])} \(file lines 8 and 9\)"):
            read_benchmark_csv(path, sort=sort)


def test_irregular_gaps_are_reported(tmp_path):
    dates = _hours(30)
    del dates[10:13]  # three missing hours
    path = _csv(tmp_path, dates)
    with pytest.warns(UserWarning, match=r"1 irregular gap\(s\) in column 'date' .*median 0 days 01:00:00.*"
                                         r"the largest is 0 days 04:00:00"):
        read_benchmark_csv(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_benchmark_csv(_csv(tmp_path, _hours(30), "regular.csv"))


def test_data_module_sort_option(tmp_path):
    dates = _hours(400)
    path = _csv(tmp_path, dates[::-1])
    with pytest.raises(ValueError, match="is not increasing"):
        TimeSeriesDataModule(data_path=str(path), split="ratio", lookback=8, horizon=4).setup("fit")
    dm = TimeSeriesDataModule(data_path=str(path), split="ratio", lookback=8, horizon=4, sort=True)
    dm.setup("fit")
    assert list(dm.window_dates("train", 0)) == list(pd.to_datetime(dates[8:12]))


def test_non_finite_prediction_input_names_the_window():
    x = torch.zeros(4, 6, 3)
    check_finite_windows(x, 0)
    x[2, 5, 1] = float("nan")
    with pytest.raises(ValueError, match=r"window 34: the input holds a non-finite value \(nan\) at step 5, variate 1"):
        check_finite_windows(x, 32)
    x[2, 5, 1] = 0.0
    x[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="window 32: the input holds a non-finite value"):
        check_finite_windows(x, 32)
