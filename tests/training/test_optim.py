"""ssm_apps.training.optim: which parameters decay, layer-wise lr decay, head lr multiplier."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ssm_apps.training.optim import apply_lr_scale, param_groups, param_groups_weight_decay


class Toy(nn.Module):
    """stem -> blocks.0 -> blocks.1 -> head, with every kind of parameter the rules distinguish."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3)
        self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Sequential(nn.LayerNorm(2), nn.Linear(2, 2, bias=False))])
        self.A_log = nn.Parameter(torch.zeros(2, 3))
        self.A_log._no_weight_decay = True
        self.dt_projs_bias = nn.Parameter(torch.zeros(4, 2))  # 2-D, but a bias
        self.pos_embed = nn.Parameter(torch.zeros(1, 2))  # named by no_weight_decay()
        self.frozen = nn.Parameter(torch.zeros(2, 2), requires_grad=False)
        self.head = nn.Linear(2, 5)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}

    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^stem", blocks=r"^blocks\.(\d+)")

    def get_classifier(self) -> nn.Module:
        return self.head


DECAY = {"stem.weight", "blocks.0.weight", "blocks.1.1.weight", "head.weight"}
NO_DECAY = {"stem.bias", "blocks.0.bias", "blocks.1.0.weight", "blocks.1.0.bias", "A_log", "dt_projs_bias",
            "pos_embed", "head.bias"}


def names(model: nn.Module, params) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("wd", [0.05, 0.0])
def test_weight_decay_groups(wd):
    model = Toy()
    decay, no_decay = param_groups_weight_decay(model, wd)
    assert (decay["name"], decay["weight_decay"], no_decay["name"], no_decay["weight_decay"]) == ("decay", wd,
                                                                                                  "no_decay", 0.0)
    assert names(model, decay["params"]) == DECAY and names(model, no_decay["params"]) == NO_DECAY
    extra = param_groups_weight_decay(model, wd, extra_no_decay=["head.weight"])
    assert names(model, extra[1]["params"]) == NO_DECAY | {"head.weight"}


def test_layer_decay_scales_follow_group_matcher_and_head_multiplier():
    model = Toy()
    groups = param_groups(model, 0.05, layer_decay=0.5)
    scale = {n: g["lr_scale"] for g in groups for n in names(model, g["params"])}
    wd = {n: g["weight_decay"] for g in groups for n in names(model, g["params"])}
    # layers: stem 0, blocks.0 1, blocks.1 2, the rest (A_log, ..., head) 3 = last -> scale 1
    assert scale["stem.weight"] == pytest.approx(0.125) and scale["blocks.0.weight"] == pytest.approx(0.25)
    assert scale["blocks.1.1.weight"] == pytest.approx(0.5) and scale["head.weight"] == pytest.approx(1.0)
    assert {n for n, v in wd.items() if v == 0.0} == NO_DECAY and {n for n, v in wd.items() if v} == DECAY
    assert all(g["name"].startswith("layer_") for g in groups)
    with_head = param_groups(model, 0.05, layer_decay=0.5, head_lr_mult=10.0)
    scale = {n: g["lr_scale"] for g in with_head for n in names(model, g["params"])}
    assert scale["head.weight"] == pytest.approx(10.0) and scale["head.bias"] == pytest.approx(10.0)
    assert scale["stem.weight"] == pytest.approx(0.125)
    assert sum(len(g["params"]) for g in with_head) == len(DECAY | NO_DECAY)  # frozen left out
    lrs = {n: g["lr"] for g in apply_lr_scale(with_head, 1e-3) for n in names(model, g["params"])}
    assert lrs["head.weight"] == pytest.approx(1e-2) and lrs["blocks.0.weight"] == pytest.approx(2.5e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"'layer_decay' must be in \(0, 1\]; got 1.5"):
        param_groups(Toy(), 0.05, layer_decay=1.5)
    with pytest.raises(ValueError, match="layer_decay=0.5 needs a model with group_matcher"):
        param_groups(nn.Linear(2, 2), 0.05, layer_decay=0.5)
    with pytest.raises(ValueError, match="head_lr_mult needs a model with get_classifier"):
        param_groups(nn.Linear(2, 2), 0.05, head_lr_mult=2.0)
