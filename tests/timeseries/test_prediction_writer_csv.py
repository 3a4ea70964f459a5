"""The forecast CSV writer (pyarrow) against pandas' ``to_csv(index=False)`` as the oracle."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ssm_apps.timeseries.prediction_writer import _write_csv


def test_forecast_csv_is_the_text_pandas_writes(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    frame = {
        "window": np.repeat(np.arange(5), 100),
        "date": (np.datetime64("2016-07-01T00:00:00") + np.arange(n) * np.timedelta64(15, "m")).astype("datetime64[s]"),
        "OT": rng.standard_normal(n).astype(np.float32) * 30,
        "odd, name \"q\"": rng.standard_normal(n).astype(np.float32),
    }
    frame["OT"][3] = 0.0
    frame["OT"][4] = 1e-8
    ours, ref = tmp_path / "ours.csv", tmp_path / "pandas.csv"
    _write_csv(ours, frame)
    pd.DataFrame(frame).to_csv(ref, index=False)
    assert ours.read_text().splitlines()[0] == ref.read_text().splitlines()[0]
    a, b = pd.read_csv(ours), pd.read_csv(ref)
    assert list(a.columns) == list(b.columns)
    assert (a["date"] == b["date"]).all() and a["date"][1] == "2016-07-01 00:15:00"
    np.testing.assert_array_equal(a.drop(columns="date").to_numpy(), b.drop(columns="date").to_numpy())
