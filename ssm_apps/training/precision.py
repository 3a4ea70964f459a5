"""TF32 as a user setting: the ``TF32`` callback (YAML ``trainer.callbacks``).

PyTorch's defaults differ per library: cuDNN convolutions use TF32 (``torch.backends.cudnn.allow_tf32``
True), cuBLAS matmuls do not (``torch.backends.cuda.matmul.allow_tf32`` False). Official VMamba's 1x1
layers are cuDNN convolutions, so its "fp32" figures are TF32 figures; ours are matmuls, so equal
settings need both flags set alike. The benchmarks state the setting they ran with (``bench_vision_gpu.py
--tf32 on|off``); a training or inference run chooses it with this callback::

    trainer:
      callbacks:
        - class_path: ssm_apps.training.precision.TF32
          init_args: {enabled: true}      # false: full fp32 in both convolutions and matmuls

The flags are process-wide; the callback sets them when the trainer sets up and restores the previous
values at teardown, so one run does not change the next.
"""
from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback

__all__ = ["TF32"]


class TF32(Callback):
    """Sets TF32 for cuDNN convolutions and cuBLAS matmuls for the run (restored afterwards).

    Args:
        enabled: TF32 on (True) or off (False) in both libraries.
        convolutions: override for cuDNN convolutions only (None: ``enabled``).
        matmuls: override for matmuls only (None: ``enabled``).
    """

    def __init__(self, enabled: bool = True, convolutions: bool | None = None, matmuls: bool | None = None) -> None:
        for name, value in (("enabled", enabled), ("convolutions", convolutions), ("matmuls", matmuls)):
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"TF32: argument '{name}' must be a bool; got {value!r}")
        self.convolutions = enabled if convolutions is None else convolutions
        self.matmuls = enabled if matmuls is None else matmuls
        self._saved: tuple[bool, bool] | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._saved is None:
            self._saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = self.convolutions
        torch.backends.cuda.matmul.allow_tf32 = self.matmuls

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._saved is not None:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self._saved
            self._saved = None
