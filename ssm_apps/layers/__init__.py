"""nn.Modules built on ``ssm_apps.kernels``: Mamba, bidirectional Mamba, the multi-route SS2D / ES2D /
SS3D blocks, the channel-first norms they use, a CPU-fast dropout and a cache-blocked MLP."""
from .bimamba import BiMamba
from .create_act import get_act_layer
from .dropout import Dropout
from .mamba import Mamba
from .mlp import BlockedMlp
from .norm import NORM_BACKENDS, LayerNorm2d, Linear2d, set_norm_backend
from .ss2d import ES2D, SS2D, SS3D

__all__ = [
    "NORM_BACKENDS", "BiMamba", "BlockedMlp", "Dropout", "ES2D", "LayerNorm2d", "Linear2d", "Mamba", "SS2D", "SS3D",
    "get_act_layer", "set_norm_backend",
]
