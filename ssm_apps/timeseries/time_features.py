"""Calendar features of timestamps ("timeF" encoding of the long-horizon forecasting benchmarks).

Every feature is a calendar field rescaled linearly to [-0.5, 0.5]; which fields are used depends
on the sampling frequency of the series (finer data gets the finer fields as well):

==========  ==========================================================================
``freq``    features (in this order)
==========  ==========================================================================
``s``       SecondOfMinute, MinuteOfHour, HourOfDay, DayOfWeek, DayOfMonth, DayOfYear
``t``       MinuteOfHour, HourOfDay, DayOfWeek, DayOfMonth, DayOfYear
``h``       HourOfDay, DayOfWeek, DayOfMonth, DayOfYear
``d``/``b`` DayOfWeek, DayOfMonth, DayOfYear
``w``       DayOfMonth, WeekOfYear
``m``       MonthOfYear
==========  ==========================================================================
"""
from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["FEATURES_BY_FREQ", "infer_freq", "normalize_freq", "time_features"]


def _second_of_minute(d: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(d.second, dtype=np.float64) / 59.0 - 0.5


def _minute_of_hour(d: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(d.minute, dtype=np.float64) / 59.0 - 0.5


def _hour_of_day(d: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(d.hour, dtype=np.float64) / 23.0 - 0.5


def _day_of_week(d: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(d.day_of_week, dtype=np.float64) / 6.0 - 0.5


def _day_of_month(d: pd.DatetimeIndex) -> np.ndarray:
    return (np.asarray(d.day, dtype=np.float64) - 1.0) / 30.0 - 0.5


def _day_of_year(d: pd.DatetimeIndex) -> np.ndarray:
    return (np.asarray(d.day_of_year, dtype=np.float64) - 1.0) / 365.0 - 0.5


def _month_of_year(d: pd.DatetimeIndex) -> np.ndarray:
    return (np.asarray(d.month, dtype=np.float64) - 1.0) / 11.0 - 0.5


def _week_of_year(d: pd.DatetimeIndex) -> np.ndarray:
    week = np.asarray(d.isocalendar().week, dtype=np.float64)
    return (week - 1.0) / 52.0 - 0.5


_Feature = Callable[[pd.DatetimeIndex], np.ndarray]

#: the feature functions per normalised frequency, in output order
FEATURES_BY_FREQ: dict[str, tuple[_Feature, ...]] = {
    "s": (_second_of_minute, _minute_of_hour, _hour_of_day, _day_of_week, _day_of_month, _day_of_year),
    "t": (_minute_of_hour, _hour_of_day, _day_of_week, _day_of_month, _day_of_year),
    "h": (_hour_of_day, _day_of_week, _day_of_month, _day_of_year),
    "d": (_day_of_week, _day_of_month, _day_of_year),
    "b": (_day_of_week, _day_of_month, _day_of_year),
    "w": (_day_of_month, _week_of_year),
    "m": (_month_of_year,),
}

# offset-alias base (lower case) -> normalised frequency
_ALIASES = {
    "s": "s", "sec": "s", "second": "s", "seconds": "s",
    "t": "t", "min": "t", "minute": "t", "minutes": "t",
    "h": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
    "b": "b",
    "w": "w", "week": "w", "weeks": "w",
    "m": "m", "month": "m", "months": "m",
}
# upper-case pandas month aliases ('ms' in lower case is a millisecond in pandas, so these stay exact)
_EXACT_ALIASES = {"ME": "m", "MS": "m"}

_SUPPORTED = ("'s' (secondly), 't'/'min' (minutely, e.g. '15min'), 'h' (hourly), 'd' (daily), "
              "'b' (business daily), 'w' (weekly, e.g. 'W-SUN'), 'm'/'ME'/'MS' (monthly)")

_FREQ_RE = re.compile(r"^\s*(\d*)\s*([A-Za-z]+)(-[A-Za-z]{3})?\s*$")


def normalize_freq(freq: str) -> str:
    """The frequency's base as one of ``'s', 't', 'h', 'd', 'b', 'w', 'm'``.

    Accepts pandas offset aliases with an optional multiple and anchor, case-insensitively:
    ``'h'``, ``'H'``, ``'1h'``, ``'t'``, ``'min'``, ``'15min'``, ``'d'``, ``'D'``, ``'b'``,
    ``'w'``, ``'W-SUN'``, ``'m'``, ``'M'``, ``'MS'``, ``'s'``. Raises ValueError otherwise.
    """
    if not isinstance(freq, str):
        raise ValueError(f"time features: 'freq' must be a string; got {freq!r} ({type(freq).__name__})")
    match = _FREQ_RE.match(freq)
    base = None
    if match and match.group(1) != "0":
        name = match.group(2)
        anchored = match.group(3) is not None
        base = _EXACT_ALIASES.get(name) or _ALIASES.get(name.lower())
        if anchored and base != "w":  # only weekly anchors ('W-MON', ...) are understood
            base = None
    if base is None:
        raise ValueError(f"time features: unsupported frequency {freq!r}; supported: {_SUPPORTED}")
    return base


def time_features(dates: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """The "timeF" calendar features of ``dates``: float32 array (len(dates), F), each in [-0.5, 0.5].

    ``freq`` is a pandas offset alias (see :func:`normalize_freq`); F is 4 for hourly data,
    5 for minutely, 6 for secondly, 3 for daily/business-daily, 2 for weekly, 1 for monthly.
    """
    base = normalize_freq(freq)
    dates = pd.DatetimeIndex(dates)
    if dates.hasnans:
        raise ValueError("time features: 'dates' contains missing timestamps (NaT)")
    feats = FEATURES_BY_FREQ[base]
    out = np.empty((len(dates), len(feats)), dtype=np.float32)
    for j, feat in enumerate(feats):
        out[:, j] = feat(dates)
    return out


_MINUTE = 60.0
_HOUR = 3600.0
_DAY = 86400.0


def infer_freq(dates: pd.DatetimeIndex) -> str:
    """One of ``'s', 't', 'h', 'd', 'w', 'm'`` from the median spacing of ``dates``.

    Spacing below a minute -> 's', below an hour -> 't', below a day -> 'h', below a week -> 'd',
    below 28 days -> 'w', otherwise 'm'. Needs at least two distinct timestamps.
    """
    dates = pd.DatetimeIndex(dates)
    if dates.hasnans:
        raise ValueError("infer_freq: 'dates' contains missing timestamps (NaT)")
    if len(dates) < 2:
        raise ValueError(f"infer_freq: needs at least 2 timestamps to infer a frequency; got {len(dates)}")
    steps = np.abs(np.diff(dates.asi8.astype(np.float64)))
    # asi8 is in the index's unit; express the spacing in seconds
    unit_seconds = pd.Timedelta(1, unit=dates.unit).total_seconds() if hasattr(dates, "unit") else 1e-9
    step = float(np.median(steps)) * unit_seconds
    if step <= 0:
        raise ValueError("infer_freq: the median spacing of the timestamps is zero (repeated dates); "
                         "pass 'freq' explicitly")
    if step < _MINUTE:
        return "s"
    if step < _HOUR:
        return "t"
    if step < _DAY:
        return "h"
    if step < 7 * _DAY:
        return "d"
    if step < 28 * _DAY:
        return "w"
    return "m"
