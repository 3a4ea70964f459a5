"""Argument checks shared by every domain's data modules, tasks and models.

Every check raises ``ValueError`` naming the owner, the argument, what was expected and what was
given, in one format::

    TimeSeriesDataModule: 'batch_size' must be an integer >= 1; got 0

The checks return the value they were given, so they can be used inline. :func:`check_finite_output`
is the models' opt-in NaN/Inf check (raises ``FloatingPointError`` naming the batch sample).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = [
    "check_choice",
    "check_finite_output",
    "check_fraction",
    "check_int",
    "check_interval",
    "check_probability",
    "check_range_pair",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(owner: str, name: str, value: Any, low: int = 0, allow_none: bool = False) -> Any:
    """``value`` must be an ``int`` (not a ``bool``) >= ``low`` (or None when ``allow_none``).

    Args:
        owner: the class or function named first in the message.
        name: the argument's name.
        value: the given value.
        low: the smallest value allowed.
        allow_none: accept None as well.
    """
    if value is None and allow_none:
        return value
    if not _is_int(value) or value < low:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{owner}: {name!r} must be an integer >= {low}{extra}; got {value!r}")
    return value


def check_interval(owner: str, name: str, value: Any, low: float, high: float, low_closed: bool = True,
                   high_closed: bool = False) -> Any:
    """``value`` must be a number in the interval from ``low`` to ``high``.

    Args:
        owner: the class or function named first in the message.
        name: the argument's name.
        value: the given value.
        low: lower end.
        high: upper end.
        low_closed: ``low`` itself is allowed.
        high_closed: ``high`` itself is allowed.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (low <= value if low_closed else low < value) and (value <= high if high_closed else value < high)
    if not ok:
        interval = f"{'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"
        raise ValueError(f"{owner}: {name!r} must be in {interval}; got {value!r}")
    return value


def check_fraction(owner: str, name: str, value: Any) -> Any:
    """``value`` must be in [0, 1) (a share held out, a smoothing, a decay)."""
    return check_interval(owner, name, value, 0.0, 1.0, low_closed=True, high_closed=False)


def check_probability(owner: str, name: str, value: Any) -> Any:
    """``value`` must be a probability in [0, 1]."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    if not ok:
        raise ValueError(f"{owner}: {name!r} must be a probability in [0, 1]; got {value!r}")
    return value


def _or_list(choices: Sequence[Any]) -> str:
    shown = [repr(c) for c in choices]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + f" or {shown[-1]}"


def check_choice(owner: str, name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` must be one of ``choices``; the message reads ``unknown <name> 'x'; choose 'a', 'b' or 'c'``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{owner}: unknown {name} {value!r}; choose {_or_list(choices)}")
    return value


def check_range_pair(owner: str, name: str, pair: Any) -> Any:
    """``pair`` must be a range ``(low, high)`` with 0 < low <= high."""
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2
    if ok:
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair) and 0 < pair[0] <= pair[1]
    if not ok:
        raise ValueError(f"{owner}: {name!r} must be a range (low, high) with 0 < low <= high; got {pair}")
    return pair


def check_finite_output(name: str, out: torch.Tensor, what: str = "output") -> torch.Tensor:
    """Raise ``FloatingPointError`` naming the first batch sample whose ``out`` has a NaN or Inf
    (synchronises the device: opt-in only)."""
    bad = ~torch.isfinite(out.detach()).flatten(1).all(dim=1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise FloatingPointError(f"{name}: the {what} of batch sample {first} has NaN or Inf values "
                                 f"({int(bad.sum())} of {len(bad)} samples affected)")
    return out
