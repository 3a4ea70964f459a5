"""S-Mamba: parity with the official model, converter behaviour, input checks."""
from __future__ import annotations

import pytest
import torch

from tests.helpers import load_fixture
from ssm_apps.timeseries import SMamba


def test_smamba_matches_official_fixture():
    fx = load_fixture("smamba_etth1_public.pt")
    model = SMamba.from_official(fx["kwargs"], fx["state_dict"]).eval()
    with torch.no_grad():
        out = model(fx["input"]["x_enc"], fx["input"]["x_mark_enc"])
    assert out.shape == (2, 96, 7)
    torch.testing.assert_close(out, fx["outputs"]["forecast"], rtol=0, atol=1e-5)


def test_converter_ignores_exactly_the_unused_official_modules():
    fx = load_fixture("smamba_etth1_public.pt")
    converted = SMamba.convert_official_state_dict(fx["state_dict"])
    dropped = set(fx["state_dict"]) - {k for k in fx["state_dict"] if not any(f".{m}." in k for m in ("man", "man2", "a"))}
    assert len(converted) == len(fx["state_dict"]) - len(dropped)
    assert all(".man." in k or ".man2." in k or ".a." in k for k in dropped)
    with pytest.raises(KeyError, match="unexpected official key 'encoder.extra.weight'"):
        SMamba.convert_official_state_dict({**fx["state_dict"], "encoder.extra.weight": torch.zeros(1)})


def test_smamba_time_marks_change_the_forecast_and_bad_shapes_raise():
    torch.manual_seed(0)
    model = SMamba(lookback=24, horizon=12, d_model=16, d_ff=16, e_layers=1).eval()
    x, marks = torch.randn(2, 24, 3), torch.randn(2, 24, 4)
    with torch.no_grad():
        a, b = model(x, marks), model(x)
    assert a.shape == b.shape == (2, 12, 3) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match=r"'x' must be \(B, lookback=24, N\); got \(2, 23, 3\)"):
        model(torch.randn(2, 23, 3))
    with pytest.raises(ValueError, match=r"'x_mark' must be \(B=2, lookback=24, n_time_features\); got \(2, 20, 4\)"):
        model(x, torch.randn(2, 20, 4))
