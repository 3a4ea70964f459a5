"""S-Mamba: parity with the official model, converter behaviour, input checks."""
from __future__ import annotations

import re

import pytest
import torch

from ssm_apps.convert import ConversionError
from ssm_apps.timeseries import SMamba
from tests.helpers import load_fixture


def test_smamba_matches_official_fixture():
    fx = load_fixture("smamba_etth1_public.pt")
    model = SMamba.from_official(fx["kwargs"], fx["state_dict"]).eval()
    with torch.no_grad():
        out = model(fx["input"]["x_enc"], fx["input"]["x_mark_enc"])
    assert out.shape == (2, 96, 7)
    torch.testing.assert_close(out, fx["outputs"]["forecast"], rtol=0, atol=1e-5)


def test_converter_maps_every_key_onto_the_model_and_drops_only_the_unused_modules():
    fx = load_fixture("smamba_etth1_public.pt")
    official = fx["state_dict"]
    model = SMamba.from_official(fx["kwargs"], official)
    converted = SMamba.convert_official_state_dict(official, model)
    assert set(converted) == set(model.state_dict())  # nothing missing, nothing extra
    # renamed keys carry the official tensors
    renames = {
        "embedding.weight": "enc_embedding.value_embedding.weight",
        "layers.0.mixer.fwd.in_proj.weight": "encoder.attn_layers.0.attention.in_proj.weight",
        "layers.1.mixer.bwd.A_log": "encoder.attn_layers.1.attention_r.A_log",
        "layers.0.norm2.bias": "encoder.attn_layers.0.norm2.bias",
        "norm.weight": "encoder.norm.weight",
        "projector.bias": "projector.bias",
    }
    for ours, theirs in renames.items():
        assert converted[ours] is official[theirs], ours
    # what is dropped: exactly the official man / man2 / a modules, and nothing of the model comes from them
    assert set(converted.dropped) == {k for k in official if re.match(r"encoder\.attn_layers\.\d+\.(man|man2|a)\.", k)}
    assert converted.dropped and len(converted) + len(converted.dropped) == len(official)
    with pytest.raises(ConversionError, match=r"keys no conversion rule knows: \['encoder.extra.weight'\]"):
        SMamba.convert_official_state_dict({**official, "encoder.extra.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match=r"model keys missing from the checkpoint: \['norm.bias'\]"):
        SMamba.convert_official_state_dict({k: v for k, v in official.items() if k != "encoder.norm.bias"}, model)


def test_check_finite_names_the_sample():
    torch.manual_seed(0)
    model = SMamba(lookback=8, horizon=4, d_model=8, d_ff=8, e_layers=1, check_finite=True).eval()
    x = torch.randn(3, 8, 2)
    assert model(x).shape == (3, 4, 2)
    x[1, 3, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="SMamba: the forecast of batch sample 1 has NaN or Inf values"):
        model(x)


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
