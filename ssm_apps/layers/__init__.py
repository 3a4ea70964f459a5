"""nn.Modules built on ``ssm_apps.kernels``: Mamba, bidirectional Mamba, and the 2D SS2D / ES2D blocks."""
from .bimamba import BiMamba
from .mamba import Mamba
from .ss2d import ES2D, SS2D

__all__ = ["BiMamba", "ES2D", "Mamba", "SS2D"]
