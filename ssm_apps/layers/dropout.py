"""``Dropout``: ``torch.nn.Dropout`` on ``ssm_apps.kernels.dropout`` (numba on the CPU, torch elsewhere)."""
from __future__ import annotations

import torch
from torch import nn

from ..kernels.dropout import dropout

__all__ = ["Dropout"]


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments, no parameters) whose CPU float path is the numba kernel.

    Args:
        p: drop probability.
        inplace: as ``nn.Dropout`` (in-place calls run torch's kernel).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout(input, self.p, self.training, self.inplace)
