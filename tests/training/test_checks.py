"""ssm_apps.training.checks: one message format, the value returned when it is fine."""
from __future__ import annotations

import pytest
import torch

from ssm_apps.training.checks import (
    check_choice,
    check_finite_output,
    check_fraction,
    check_int,
    check_interval,
    check_probability,
    check_range_pair,
)


def test_checks_pass_values_through():
    assert check_int("O", "n", 3, 1) == 3 and check_int("O", "n", None, 1, allow_none=True) is None
    assert check_fraction("O", "f", 0.0) == 0.0 and check_probability("O", "p", 1.0) == 1.0
    assert check_interval("O", "c", 1.0, 0.0, 1.0, low_closed=False, high_closed=True) == 1.0
    assert check_choice("O", "split", "b", ("a", "b")) == "b"
    assert check_range_pair("O", "scale", (0.08, 1.0)) == (0.08, 1.0)


@pytest.mark.parametrize("call,message", [
    (lambda: check_int("Dm", "batch_size", 0, 1), "Dm: 'batch_size' must be an integer >= 1; got 0"),
    (lambda: check_int("Dm", "batch_size", True, 1), "Dm: 'batch_size' must be an integer >= 1; got True"),
    (lambda: check_int("Dm", "workers", 1.5, 0), "Dm: 'workers' must be an integer >= 0; got 1.5"),
    (lambda: check_int("T", "num_classes", 0, 1, allow_none=True),
     "T: 'num_classes' must be an integer >= 1 or None; got 0"),
    (lambda: check_fraction("Dm", "val_fraction", 1.0), r"Dm: 'val_fraction' must be in \[0, 1\); got 1.0"),
    (lambda: check_interval("Dm", "crop_pct", 0.0, 0.0, 1.0, low_closed=False, high_closed=True),
     r"Dm: 'crop_pct' must be in \(0, 1\]; got 0.0"),
    (lambda: check_probability("Dm", "hflip", 1.5), r"Dm: 'hflip' must be a probability in \[0, 1\]; got 1.5"),
    (lambda: check_choice("Dm", "split", "monthly", ("ett_hour", "ett_minute", "ratio")),
     "Dm: unknown split 'monthly'; choose 'ett_hour', 'ett_minute' or 'ratio'"),
    (lambda: check_range_pair("Dm", "ratio", (2.0, 1.0)),
     r"Dm: 'ratio' must be a range \(low, high\) with 0 < low <= high; got \(2.0, 1.0\)"),
    (lambda: check_range_pair("Dm", "ratio", (1.0,)), r"Dm: 'ratio' must be a range .*; got \(1.0,\)"),
])
def test_messages_name_owner_argument_expected_and_given(call, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        call()


def test_check_finite_output_names_the_first_bad_sample():
    out = torch.zeros(4, 3)
    assert check_finite_output("M", out) is out
    out[2, 1], out[3, 0] = float("nan"), float("inf")
    with pytest.raises(FloatingPointError, match=r"^M: the forecast of batch sample 2 has NaN or Inf values "
                                                 r"\(2 of 4 samples affected\)$"):
        check_finite_output("M", out, "forecast")
