"""``SSMTask``: the thin LightningModule base of every domain's task.

What the base gives a task:

* ``training_step`` / ``validation_step`` / ``test_step`` all call ``_common_step(batch, stage)``
  (``stage`` is ``"train"``, ``"val"`` or ``"test"``), which returns the loss (or None) and logs.
* Optimiser and schedule from one set of hyper-parameter names, read from ``self.hparams`` (a task
  exposes the ones it wants as ``__init__`` arguments; the others take ``DEFAULTS``):

  ==================  ======================================================================
  ``optimizer``       ``"adamw"``, ``"adam"`` or ``"sgd"`` (with ``betas``, ``eps``, ``momentum``)
  ``lr``              peak learning rate
  ``weight_decay``    decay of matrices and kernels (norms, biases, ``A_log``/``D`` get none)
  ``layer_decay``     layer-wise lr decay through the model's ``group_matcher`` (1 = off)
  ``head_lr_mult``    lr multiplier of the classifier (1 = off)
  ``schedule``        ``"cosine"`` / ``"poly"`` (per optimizer step, with ``warmup_epochs``,
                      ``warmup_steps``, ``warmup_lr_init``, ``min_lr``, ``poly_power``),
                      ``"step"`` (per epoch: ``lr_decay`` after ``hold_epochs``), ``"multistep"``
                      (the warm-up per step, then ``lr_decay`` at epochs ``lr_decay_start`` +
                      k ``lr_decay_step``) or ``"constant"`` (after the warm-up, if any)
  ``ema``             weight EMA (``ema_decay``, ``ema_warmup``), see ``training.ema``
  ==================  ======================================================================

* Several optimisers: :meth:`extra_optimizers` returns more Lightning optimiser dicts (e.g. the
  codec's auxiliary optimiser of the entropy-bottleneck quantiles); with any, the task must set
  ``automatic_optimization = False`` and step them itself, as Lightning requires.
* :meth:`from_datamodule`: a value the data knows (``num_classes``, ``n_variates``, ...).

Putting a model in a task (one idiom for every domain): ``Task.load_from_checkpoint(path)`` must
rebuild the model from the checkpoint alone, so the task's hyper-parameters must hold what builds it:

* **By name** (timm-registered image backbones): ``model: str`` plus ``model_kwargs`` (and values
  resolved in ``setup``, such as ``num_classes``, written back into ``self.hparams``), as
  ``ClassificationTask`` does.
* **By class** (any other ``nn.Module``): ``model: nn.Module | dict``. In a YAML the model is given as
  ``class_path`` / ``init_args``; LightningCLI then records that config as the hyper-parameter and
  Lightning rebuilds it on load. From Python, pass the same dict
  (``{"class_path": "ssm_apps.timeseries.SMamba", "init_args": {...}}``), which :func:`build_module`
  instantiates. A model passed as an object from Python cannot be recorded: its checkpoint needs
  ``load_from_checkpoint(path, model=...)``. Call :meth:`save_task_hyperparameters` instead of
  ``save_hyperparameters`` to get this behaviour.
"""
from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn

from .checks import check_choice, check_fraction, check_int, check_interval
from .ema import EMAMixin
from .optim import apply_lr_scale, param_groups
from .schedules import (
    step_decay_scheduler,
    warmup_cosine_scheduler,
    warmup_multistep_scheduler,
    warmup_poly_scheduler,
    warmup_steps_from_epochs,
)

__all__ = ["SSMTask", "build_module", "module_config"]

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "poly", "step", "multistep", "constant")


def module_config(value: Any) -> dict[str, Any] | None:
    """``value`` as a ``{"class_path", "init_args"}`` dict when it is one (a LightningCLI config or a
    dict / Namespace of that shape), else None."""
    if hasattr(value, "as_dict"):  # jsonargparse Namespace
        value = value.as_dict()
    if isinstance(value, Mapping) and "class_path" in value:
        return {"class_path": str(value["class_path"]), "init_args": dict(value.get("init_args") or {})}
    return None


def build_module(owner: str, name: str, value: nn.Module | Mapping[str, Any]) -> nn.Module:
    """An ``nn.Module`` as given, or built from a ``{"class_path": "pkg.mod.Class", "init_args": {...}}``
    dict (nested ``class_path`` dicts in ``init_args`` are built too).

    Raises:
        ValueError: neither a module nor such a dict, or the class is not an ``nn.Module``.
    """
    if isinstance(value, nn.Module):
        return value
    config = module_config(value)
    if config is None:
        raise ValueError(f"{owner}: {name!r} must be an nn.Module or a dict with 'class_path' (and 'init_args'); "
                         f"got {type(value).__name__}")
    module_path, _, cls_name = config["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_path), cls_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{owner}: {name!r}: cannot import class_path {config['class_path']!r}: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{owner}: {name!r}: class_path {config['class_path']!r} is not an nn.Module class")
    kwargs = {k: build_module(owner, f"{name}.{k}", v) if module_config(v) is not None else v
              for k, v in config["init_args"].items()}
    return cls(**kwargs)


def fused_adam_supported(groups: list[dict[str, Any]]) -> bool:
    """Whether torch's fused Adam / AdamW can take ``groups``: floating parameters, all on the CPU or all on
    CUDA devices (on a 2-core CPU it makes an S-Mamba step about 10% faster than the per-tensor loop)."""
    params = [p for g in groups for p in g["params"]]
    kinds = {p.device.type for p in params}
    return bool(params) and len(kinds) == 1 and kinds <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)


class SSMTask(EMAMixin, L.LightningModule):
    """Base of the domain tasks; see the module docstring. Subclasses implement ``_common_step`` and
    keep their network in ``self.model`` (or override :meth:`ema_source`)."""

    DEFAULTS: ClassVar[dict[str, Any]] = dict(
        optimizer="adamw", lr=1e-3, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, momentum=0.9,
        layer_decay=1.0, head_lr_mult=1.0,
        schedule="cosine", warmup_epochs=0.0, warmup_steps=None, warmup_lr_init=0.0, min_lr=0.0, poly_power=1.0,
        lr_decay=1.0, hold_epochs=1, lr_decay_start=1, lr_decay_step=1,
        ema=False, ema_decay=0.999, ema_warmup=True,
    )

    # ----------------------------------------------------------------------------- hyper-parameters
    def save_task_hyperparameters(self, *modules: str) -> None:
        """``save_hyperparameters()`` of the calling ``__init__``, with each argument in ``modules``
        recorded as its ``class_path`` / ``init_args`` config when it has one (LightningCLI, or a dict
        given from Python), else dropped (a module object passed from Python)."""
        import inspect

        frame = inspect.currentframe().f_back  # the subclass __init__ that called us
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*is an instance of `nn.Module` and is already saved")
            self.save_hyperparameters(frame=frame)
        for name in modules:
            if name in self.hparams:
                self.hparams[name] = module_config(self.hparams[name])

    def hp(self, name: str) -> Any:
        """Hyper-parameter ``name``: the task's own value, else ``DEFAULTS[name]``."""
        if name in self.hparams:
            return self.hparams[name]
        return self.DEFAULTS[name]

    def check_task_hyperparameters(self) -> None:
        """Check the shared optimiser / schedule / EMA names (call at the end of ``__init__``)."""
        owner = type(self).__name__
        check_choice(owner, "optimizer", self.hp("optimizer"), OPTIMIZERS)
        check_choice(owner, "schedule", self.hp("schedule"), SCHEDULES)
        check_interval(owner, "lr", self.hp("lr"), 0.0, float("inf"), low_closed=False)
        check_interval(owner, "weight_decay", self.hp("weight_decay"), 0.0, float("inf"))
        check_fraction(owner, "ema_decay", self.hp("ema_decay"))
        warmup_steps, warmup_epochs = self.hp("warmup_steps"), self.hp("warmup_epochs")
        if (warmup_steps is not None and warmup_steps < 0) or warmup_epochs < 0:
            raise ValueError(f"{owner}: warm-up lengths must be >= 0; got warmup_steps={warmup_steps}, "
                             f"warmup_epochs={warmup_epochs}")
        check_int(owner, "hold_epochs", self.hp("hold_epochs"), 0)
        check_int(owner, "lr_decay_start", self.hp("lr_decay_start"), 0)
        check_int(owner, "lr_decay_step", self.hp("lr_decay_step"), 1)

    def from_datamodule(self, attr: str, given: Any = None) -> Any:
        """``given`` when not None, else the trainer's datamodule's ``attr``.

        Raises:
            ValueError: neither is there.
        """
        if given is not None:
            return given
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        value = getattr(dm, attr, None)
        if value is None:
            raise ValueError(f"{type(self).__name__}: {attr}=None needs a datamodule with {attr!r}; "
                             f"set model.init_args.{attr}")
        return value

    # ------------------------------------------------------------------------------------ steps
    def _common_step(self, batch: Any, stage: str) -> torch.Tensor | None:
        raise NotImplementedError(f"{type(self).__name__} must implement _common_step(batch, stage)")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._common_step(batch, "test")

    def log_lr(self, batch_size: int) -> None:
        """Log the first parameter group's lr as ``lr`` (per step; only under a trainer)."""
        if self._trainer is not None:
            self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False,
                     batch_size=batch_size)

    # ------------------------------------------------------------------------------- optimisers
    def optim_param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups of the main optimiser (``training.optim.param_groups`` of
        :meth:`ema_source`; one group of every trainable parameter when nothing differs)."""
        model = self.ema_source()
        wd, layer_decay, head = self.hp("weight_decay"), self.hp("layer_decay"), self.hp("head_lr_mult")
        if wd == 0 and layer_decay == 1.0 and head == 1.0:
            return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": 0.0,
                     "lr_scale": 1.0, "name": "all"}]
        return param_groups(model, wd, layer_decay=layer_decay, head_lr_mult=head)

    def build_optimizer(self, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
        """The ``optimizer`` hyper-parameter's torch optimiser over ``groups`` (their ``lr_scale`` applied)."""
        name = self.hp("optimizer")
        groups = [{k: v for k, v in g.items() if k != "lr_scale"} for g in apply_lr_scale(groups, lr)]
        if name in ("adamw", "adam"):
            cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
            fused = True if fused_adam_supported(groups) else None  # one multi-tensor kernel, not one per tensor
            return cls(groups, lr=lr, betas=tuple(self.hp("betas")), eps=self.hp("eps"), fused=fused)
        return torch.optim.SGD(groups, lr=lr, momentum=self.hp("momentum"))

    def build_scheduler(self, optimizer: torch.optim.Optimizer, base_lr: float) -> dict[str, Any] | None:
        """The ``schedule`` hyper-parameter's Lightning scheduler dict (None for ``"constant"``)."""
        name = self.hp("schedule")
        if name == "constant" and not self.hp("warmup_steps") and not self.hp("warmup_epochs"):
            return None
        if name == "step":
            return step_decay_scheduler(optimizer, self.hp("lr_decay"), self.hp("hold_epochs"))
        total = int(self.trainer.estimated_stepping_batches)
        warmup = warmup_steps_from_epochs(type(self).__name__, self.hp("warmup_steps"), self.hp("warmup_epochs"),
                                          total, self.trainer.max_epochs)
        if name == "constant":  # a cosine from base_lr to base_lr: the warm-up, then constant
            return warmup_cosine_scheduler(optimizer, total, warmup, self.hp("warmup_lr_init"), base_lr,
                                           base_lr=base_lr)
        if name == "multistep":
            epochs = self.trainer.max_epochs
            if epochs is None or epochs < 1:
                raise ValueError(f"{type(self).__name__}: schedule 'multistep' counts epochs; set trainer.max_epochs")
            return warmup_multistep_scheduler(optimizer, max(1, total // epochs), warmup, self.hp("lr_decay_start"),
                                              self.hp("lr_decay_step"), self.hp("lr_decay"),
                                              self.hp("warmup_lr_init"), base_lr=base_lr)
        if name == "cosine":
            return warmup_cosine_scheduler(optimizer, total, warmup, self.hp("warmup_lr_init"), self.hp("min_lr"),
                                           base_lr=base_lr)
        return warmup_poly_scheduler(optimizer, total, warmup, self.hp("warmup_lr_init"), self.hp("min_lr"),
                                     self.hp("poly_power"), base_lr=base_lr)

    def extra_optimizers(self) -> list[dict[str, Any]]:
        """More optimisers (Lightning dicts with ``optimizer`` and optional ``lr_scheduler``); none by default."""
        return []

    def configure_optimizers(self) -> Any:
        lr = float(self.hp("lr"))
        opt = self.build_optimizer(self.optim_param_groups(), lr)
        sched = self.build_scheduler(opt, lr)
        main = {"optimizer": opt, **({"lr_scheduler": sched} if sched is not None else {})}
        extra = self.extra_optimizers()
        return [main, *extra] if extra else main

    # --------------------------------------------------------------------------------------- EMA
    def setup_ema_from_hparams(self) -> None:
        """:meth:`setup_ema` of :meth:`ema_source` when ``ema`` is on."""
        if self.hp("ema"):
            self.setup_ema(self.ema_source(), self.hp("ema_decay"), self.hp("ema_warmup"))
