"""Learning-rate schedules as Lightning scheduler dicts (torch ``LambdaLR`` on pure functions).

* :func:`warmup_cosine_lr` / :func:`warmup_cosine_scheduler`: linear warm-up, then a half cosine,
  per optimizer step (image classification, segmentation, pretraining).
* :func:`warmup_poly_lr` / :func:`warmup_poly_scheduler`: linear warm-up, then polynomial decay, per
  optimizer step (mmseg's ``PolyLR``).
* :func:`step_decay_scheduler`: constant for ``hold_epochs`` epochs, then multiplied by ``decay``
  after every epoch (the long-horizon forecasting benchmarks' ``lradj='type1'``).
* :func:`multistep_factor` / :func:`warmup_multistep_scheduler`: a linear warm-up per optimizer step
  times ``decay`` once per milestone epoch ``first, first + every, ...`` reached (torch's
  ``MultiStepLR`` stepped after every epoch; the SSAST/SSAMBA fine-tuning recipe).

The lr functions take the base lr and return the lr; the schedulers scale every parameter group's
own lr by ``fn(step, 1.0)`` relative factors, so per-group ``lr_scale`` ratios are kept.
"""
from __future__ import annotations

import math
from typing import Any

import torch

__all__ = [
    "multistep_factor",
    "step_decay_scheduler",
    "warmup_multistep_scheduler",
    "warmup_cosine_lr",
    "warmup_cosine_scheduler",
    "warmup_poly_lr",
    "warmup_poly_scheduler",
    "warmup_steps_from_epochs",
]


def warmup_cosine_lr(step: int, base_lr: float, total_steps: int, warmup_steps: int = 0,
                     warmup_lr_init: float = 0.0, min_lr: float = 0.0) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warm-up from ``warmup_lr_init``
    (step 0) towards ``base_lr`` (reached at step ``warmup_steps``), then a half cosine from
    ``base_lr`` down to ``min_lr`` at step ``total_steps`` (held there after it)::

        step < W:  warmup_lr_init + (base_lr - warmup_lr_init) * step / W
        step >= W: min_lr + (base_lr - min_lr) * (1 + cos(pi * min(1, (step - W) / (total_steps - W)))) / 2
    """
    if step < warmup_steps:
        return warmup_lr_init + (base_lr - warmup_lr_init) * step / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))


def warmup_poly_lr(step: int, base_lr: float, total_steps: int, warmup_steps: int = 0,
                   warmup_lr_init: float = 0.0, min_lr: float = 0.0, power: float = 1.0) -> float:
    """Linear warm-up as :func:`warmup_cosine_lr`, then
    ``min_lr + (base_lr - min_lr) * (1 - min(1, (step - W) / (total_steps - W))) ** power``."""
    if step < warmup_steps:
        return warmup_lr_init + (base_lr - warmup_lr_init) * step / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * (1.0 - t) ** power


def warmup_steps_from_epochs(owner: str, warmup_steps: int | None, warmup_epochs: float, total_steps: int,
                             max_epochs: int | None) -> int:
    """Warm-up length in optimizer steps: ``warmup_steps`` when given, else ``warmup_epochs`` epochs of
    ``total_steps / max_epochs`` steps (rounded), capped at ``total_steps``.

    Raises:
        ValueError: ``warmup_epochs > 0`` with no ``max_epochs`` (training by ``max_steps``).
    """
    if warmup_steps is not None:
        steps = int(warmup_steps)
    elif warmup_epochs == 0:
        steps = 0
    else:
        if max_epochs is None or max_epochs < 1:
            raise ValueError(f"{owner}: warmup_epochs needs trainer.max_epochs; set warmup_steps "
                             f"when training by max_steps")
        steps = int(round(warmup_epochs * total_steps / max_epochs))
    return min(steps, total_steps)


def _per_step(sched: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    return {"scheduler": sched, "interval": "step", "frequency": 1}


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                            warmup_lr_init: float = 0.0, min_lr: float = 0.0,
                            base_lr: float | None = None) -> dict[str, Any]:
    """:func:`warmup_cosine_lr` per optimizer step, as a Lightning scheduler dict.

    Args:
        optimizer: the optimiser; its groups' lrs are the peak lrs.
        total_steps: optimizer steps of the whole training (``trainer.estimated_stepping_batches``).
        warmup_steps: warm-up length.
        warmup_lr_init: lr at step 0, for the reference lr ``base_lr``.
        min_lr: final lr, for the reference lr ``base_lr``.
        base_lr: the reference lr that ``warmup_lr_init`` and ``min_lr`` relate to (default: the first
            group's lr); every group follows the same relative curve.
    """
    ref = float(base_lr if base_lr is not None else optimizer.param_groups[0]["lr"])

    def factor(step: int) -> float:
        return warmup_cosine_lr(step, ref, total_steps, warmup_steps, warmup_lr_init, min_lr) / ref

    return _per_step(torch.optim.lr_scheduler.LambdaLR(optimizer, factor))


def warmup_poly_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                          warmup_lr_init: float = 0.0, min_lr: float = 0.0, power: float = 1.0,
                          base_lr: float | None = None) -> dict[str, Any]:
    """:func:`warmup_poly_lr` per optimizer step, as a Lightning scheduler dict (arguments as
    :func:`warmup_cosine_scheduler`, plus ``power``)."""
    ref = float(base_lr if base_lr is not None else optimizer.param_groups[0]["lr"])

    def factor(step: int) -> float:
        return warmup_poly_lr(step, ref, total_steps, warmup_steps, warmup_lr_init, min_lr, power) / ref

    return _per_step(torch.optim.lr_scheduler.LambdaLR(optimizer, factor))


def multistep_factor(epoch: int, first: int, every: int, decay: float) -> float:
    """``decay ** n`` for 0-based ``epoch``, n = the milestones ``first, first + every, ...`` that are
    <= ``epoch`` (0 before ``first``)."""
    return decay ** (0 if epoch < first else 1 + (epoch - first) // every)


def step_decay_scheduler(optimizer: torch.optim.Optimizer, decay: float, hold_epochs: int = 1) -> dict[str, Any]:
    """lr_e = lr * decay ** max(0, e - hold_epochs) for 0-based epoch e, as a per-epoch Lightning
    scheduler dict (``hold_epochs=1``: the official ``lradj='type1'``, lr for epochs 0 and 1)."""
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: multistep_factor(epoch, hold_epochs + 1, 1, decay))
    return {"scheduler": sched, "interval": "epoch"}


def warmup_multistep_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, warmup_steps: int,
                               first: int, every: int, decay: float, warmup_lr_init: float = 0.0,
                               base_lr: float | None = None) -> dict[str, Any]:
    """Per optimizer step s in (0-based) epoch e = s // ``steps_per_epoch``: the linear warm-up of
    :func:`warmup_cosine_lr` (from ``warmup_lr_init`` over ``warmup_steps``) times
    :func:`multistep_factor` ``(e, first, every, decay)``, as a Lightning scheduler dict.

    Args:
        optimizer: the optimiser; its groups' lrs are the peak lrs.
        steps_per_epoch: optimizer steps per epoch (>= 1).
        warmup_steps: warm-up length in optimizer steps.
        first: first milestone epoch (0-based; the lr is multiplied by ``decay`` from it on).
        every: epochs between further milestones (>= 1).
        decay: factor per milestone.
        warmup_lr_init: lr at step 0, for the reference lr ``base_lr``.
        base_lr: the reference lr of ``warmup_lr_init`` (default: the first group's lr).
    """
    if steps_per_epoch < 1 or every < 1:
        raise ValueError(f"warmup_multistep_scheduler: steps_per_epoch and every must be >= 1; got "
                         f"{steps_per_epoch} and {every}")
    ref = float(base_lr if base_lr is not None else optimizer.param_groups[0]["lr"])

    def factor(step: int) -> float:
        warm = warmup_cosine_lr(step, ref, step + 1, warmup_steps, warmup_lr_init, ref) / ref
        return warm * multistep_factor(step // steps_per_epoch, first, every, decay)

    return _per_step(torch.optim.lr_scheduler.LambdaLR(optimizer, factor))
