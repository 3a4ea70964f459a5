"""Activation layers by name: timm's ``get_act_layer`` with a clear error for unknown names."""
from __future__ import annotations

from torch import nn

__all__ = ["get_act_layer"]


def get_act_layer(act: str | type[nn.Module]) -> type[nn.Module]:
    """An activation class from a name timm knows ('silu', 'gelu', 'relu', 'sigmoid', ...) or a class.

    Raises:
        ValueError: an unknown name.
    """
    from timm.layers import get_act_layer as timm_get_act_layer

    if isinstance(act, str):
        try:
            layer = timm_get_act_layer(act.lower())
        except KeyError:
            layer = None
        if layer is None:
            raise ValueError(f"activation {act!r} is not one timm knows (e.g. 'silu', 'gelu', 'relu', 'sigmoid')")
        return layer
    return act
