"""nn.Modules built on ``ssm_apps.kernels``: Mamba and bidirectional Mamba blocks."""
from .bimamba import BiMamba
from .mamba import Mamba

__all__ = ["BiMamba", "Mamba"]
