"""ssm_apps.convert: the one converter convention (unwrap, rules, finishing check)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ssm_apps.convert import ConversionError, apply_rules, convert_checkpoint, unwrap_checkpoint


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)


def official_tiny() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"trunk.weight": torch.randn(4, 3, 1, 1), "trunk.bias": torch.randn(4),
            "fc.weight": torch.randn(2, 4), "fc.bias": torch.randn(2), "aux.weight": torch.randn(5)}


RULES = [(r"^trunk\.", "body."), (r"^fc\.(weight|bias)$", lambda m: f"head.{m.group(1)}"), (r"^aux\.", None)]


def test_unwrap_prefers_ema_strips_module_and_selects_prefix() -> None:
    t = torch.ones(1)
    ckpt = {"model": {"module.a": t * 0}, "model_ema": {"module.module.backbone.a": t, "decode_head.b": t, "x": 3}}
    assert unwrap_checkpoint(ckpt) == {"backbone.a": t, "decode_head.b": t}
    assert unwrap_checkpoint(ckpt, prefix="backbone.") == {"a": t}
    with pytest.raises(ConversionError, match="no key starting with 'neck.'"):
        unwrap_checkpoint(ckpt, prefix="neck.")


def test_rules_rename_reshape_and_drop_then_load_strict() -> None:
    official = official_tiny()
    model = Tiny()
    sd = convert_checkpoint({"state_dict": official}, model, RULES, "Tiny")
    assert sd.dropped == ["aux.weight"] and sd.filled == [] and sd.ignored == []
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.body.weight, official["trunk.weight"].reshape(4, 3))  # 1x1 conv -> Linear
    assert torch.equal(model.head.bias, official["fc.bias"])
    mapped, unmatched, origins, dropped = apply_rules(official, RULES)
    assert sorted(mapped) == sorted(model.state_dict()) and unmatched == [] and origins["body.bias"] == "trunk.bias"


def test_every_problem_is_reported_at_once() -> None:
    official = official_tiny()
    official["stray.weight"] = torch.zeros(1)
    official["fc.bias"] = torch.zeros(3)
    del official["trunk.bias"]
    rules = [*RULES, (r"^stray\.", "extra.")]
    with pytest.raises(ConversionError) as err:
        convert_checkpoint(official, Tiny(), rules, "Tiny")
    msg = str(err.value)
    assert "'stray.weight' (converted to 'extra.weight') has no place" in msg
    assert "'fc.bias' (converted to 'head.bias'): shape (3,), the model expects (2,)" in msg
    assert "missing from the checkpoint: ['body.bias']" in msg
    with pytest.raises(ConversionError, match="keys no conversion rule knows: \\['aux.weight'\\]"):
        convert_checkpoint(official_tiny(), Tiny(), RULES[:2], "Tiny")


def test_fill_missing_and_ignore_for_a_new_head() -> None:
    official = {k: v for k, v in official_tiny().items() if not k.startswith("fc.")}
    official["old_head.weight"] = torch.zeros(7)
    model = Tiny()
    before = model.head.weight.detach().clone()
    rules = [*RULES, (r"^old_head\.", "old_head.")]
    sd = convert_checkpoint(official, model, rules, "Tiny", ignore=[r"^old_head\."], fill_missing=[r"^head\."])
    assert sd.filled == ["head.bias", "head.weight"] and sd.ignored == ["old_head.weight"]
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.head.weight, before)


def test_two_keys_onto_one_is_an_error() -> None:
    with pytest.raises(ConversionError, match="both convert to 'body.weight'"):
        apply_rules({"a": torch.zeros(1), "b": torch.zeros(1)}, [(r"^[ab]$", lambda m: "body.weight")])
