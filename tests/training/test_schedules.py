"""ssm_apps.training.schedules: the lr of every step / epoch against the formulas written out."""
from __future__ import annotations

import math

import pytest
import torch

from ssm_apps.training.schedules import (
    step_decay_scheduler,
    warmup_cosine_scheduler,
    warmup_multistep_scheduler,
    warmup_poly_scheduler,
    warmup_steps_from_epochs,
)


def run(conf: dict, opt: torch.optim.Optimizer, n: int) -> list[list[float]]:
    seen = []
    for _ in range(n):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        conf["scheduler"].step()
    return seen


def two_groups(lr: float) -> torch.optim.Optimizer:
    p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [p], "lr": lr}, {"params": [q], "lr": lr * 0.1}], lr=lr)


def test_warmup_poly_per_step_and_group_ratio_kept():
    lr, lr0, lr_min, total, warm, power = 1e-2, 1e-4, 1e-4, 20, 4, 0.9
    opt = two_groups(lr)
    conf = warmup_poly_scheduler(opt, total, warm, lr0, lr_min, power)
    assert conf["interval"] == "step" and conf["frequency"] == 1
    seen = run(conf, opt, total + 2)
    for s in range(total + 2):
        want = lr0 + (lr - lr0) * s / warm if s < warm else \
            lr_min + (lr - lr_min) * (1 - min(1.0, (s - warm) / (total - warm))) ** power
        assert seen[s][0] == pytest.approx(want, rel=1e-9) and seen[s][1] == pytest.approx(want * 0.1, rel=1e-9)


def test_warmup_cosine_reference_lr():
    opt = two_groups(0.5)  # first group's lr is the reference unless base_lr is given
    seen = run(warmup_cosine_scheduler(opt, 10, 0, 0.0, 0.0, base_lr=1.0), opt, 11)
    assert seen[5][0] == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert seen[10] == pytest.approx([0.0, 0.0])


def test_step_decay_per_epoch():
    opt = two_groups(1.0)
    conf = step_decay_scheduler(opt, 0.5, hold_epochs=1)
    assert conf["interval"] == "epoch"
    assert [s[0] for s in run(conf, opt, 5)] == pytest.approx([1.0, 1.0, 0.5, 0.25, 0.125])


def test_warmup_multistep_equals_torch_multisteplr_after_the_warmup():
    """Per step: torch's MultiStepLR stepped after every epoch (milestones 5, 7, 9, ... as 1-based epochs
    counted by the official loop), times the linear warm-up of the first steps; group ratio kept."""
    spe, warm = 4, 6
    opt = two_groups(2.0)
    seen = run(warmup_multistep_scheduler(opt, spe, warm, first=5, every=2, decay=0.5), opt, 12 * spe)
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(ref_opt, list(range(5, 100, 2)), gamma=0.5)
    for epoch in range(12):
        for i in range(spe):
            step = epoch * spe + i
            expected = ref_opt.param_groups[0]["lr"] * min(1.0, step / warm)
            assert seen[step] == pytest.approx([expected, expected * 0.1]), step
        ref_opt.step()
        ref.step()
    with pytest.raises(ValueError, match="steps_per_epoch"):
        warmup_multistep_scheduler(two_groups(1.0), 0, 0, 1, 1, 0.5)


def test_warmup_steps_from_epochs():
    assert warmup_steps_from_epochs("T", None, 2.0, 100, 20) == 10
    assert warmup_steps_from_epochs("T", 7, 2.0, 100, 20) == 7
    assert warmup_steps_from_epochs("T", 500, 0.0, 100, 20) == 100  # capped at the total
    assert warmup_steps_from_epochs("T", None, 0.0, 100, None) == 0
    with pytest.raises(ValueError, match="T: warmup_epochs needs trainer.max_epochs"):
        warmup_steps_from_epochs("T", None, 1.0, 100, -1)
