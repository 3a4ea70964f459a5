"""Parameter groups for the optimisers of every task (timm's grouping, with the SSM conventions).

No weight decay goes to: parameters with at most one dimension (norm scales and shifts, biases),
names ending in ``bias`` (also SS2D's stacked 2-D ``dt_projs_bias``), parameters flagged
``_no_weight_decay = True`` (the SSMs' ``A_log``/``A_logs`` and ``D``/``Ds``, as mamba_ssm flags
them), and the names in ``model.no_weight_decay()`` (timm convention) or ``extra_no_decay``.
Frozen parameters (``requires_grad=False``) are left out.

Layer-wise lr decay (``layer_decay < 1``) groups the parameters through the model's
``group_matcher`` with ``timm.optim.param_groups_layer_decay``; the classifier may get its own lr
multiplier (``head_lr_mult``). Every group carries ``lr_scale``; :func:`apply_lr_scale` turns it into
the group's ``lr`` before the torch optimiser is built, so any torch scheduler keeps the ratio.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

__all__ = ["apply_lr_scale", "no_weight_decay_names", "param_groups", "param_groups_weight_decay"]


def no_weight_decay_names(model: nn.Module, extra_no_decay: Iterable[str] = ()) -> set[str]:
    """Names of the parameters that get no weight decay beyond the 1-D ones (see the module docstring)."""
    skip = set(extra_no_decay)
    if hasattr(model, "no_weight_decay"):
        skip |= set(model.no_weight_decay())
    for name, p in model.named_parameters():
        if name.endswith("bias") or getattr(p, "_no_weight_decay", False):
            skip.add(name)
    return skip


def param_groups_weight_decay(model: nn.Module, weight_decay: float,
                              extra_no_decay: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Two parameter groups, ``decay`` (``weight_decay``) and ``no_decay`` (0), on timm's
    ``param_groups_weight_decay`` (the no-decay rules are those of the module docstring).

    Args:
        model: the network.
        weight_decay: decay of the weight matrices and kernels.
        extra_no_decay: more parameter names without decay.

    Returns:
        ``[{"params", "weight_decay", "name": "decay"}, {"params", "weight_decay": 0.0, "name": "no_decay"}]``.
    """
    from timm.optim import param_groups_weight_decay as timm_groups

    skip = no_weight_decay_names(model, extra_no_decay)
    # a non-zero placeholder decay keeps timm from putting everything in one group when weight_decay is 0
    groups = timm_groups(model, weight_decay or 1.0, no_weight_decay_list=sorted(skip))
    decay = next((g["params"] for g in groups if g["weight_decay"] != 0.0), [])
    no_decay = next((g["params"] for g in groups if g["weight_decay"] == 0.0), [])
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def _head_param_names(model: nn.Module) -> set[str]:
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Module):
        return set()
    ids = {id(p) for p in head.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float = 1.0,
    head_lr_mult: float = 1.0,
    extra_no_decay: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Parameter groups with weight-decay exclusions, layer-wise lr decay and a head-lr multiplier.

    Args:
        model: the network; ``layer_decay < 1`` needs its ``group_matcher`` (timm models have one).
        weight_decay: decay of the weight matrices and kernels.
        layer_decay: lr scale ratio between consecutive layers (1 = none): the last layer group gets
            scale 1, the one before ``layer_decay``, and so on (timm ``param_groups_layer_decay``).
        head_lr_mult: extra lr scale of the classifier (``model.get_classifier()``) parameters.
        extra_no_decay: more parameter names without decay.

    Returns:
        Groups with ``params``, ``weight_decay``, ``lr_scale`` and ``name``; without layer decay and
        head multiplier, the two groups of :func:`param_groups_weight_decay` (``lr_scale`` 1).
    """
    if layer_decay <= 0 or layer_decay > 1:
        raise ValueError(f"param_groups: 'layer_decay' must be in (0, 1]; got {layer_decay}")
    if head_lr_mult <= 0:
        raise ValueError(f"param_groups: 'head_lr_mult' must be > 0; got {head_lr_mult}")
    if layer_decay == 1.0:
        groups = [dict(g, lr_scale=1.0) for g in param_groups_weight_decay(model, weight_decay, extra_no_decay)]
    else:
        if not hasattr(model, "group_matcher"):
            raise ValueError(f"param_groups: layer_decay={layer_decay} needs a model with group_matcher(); "
                             f"{type(model).__name__} has none")
        from timm.optim import param_groups_layer_decay

        skip = no_weight_decay_names(model, extra_no_decay)
        groups = param_groups_layer_decay(model, weight_decay=weight_decay, no_weight_decay_list=sorted(skip),
                                          layer_decay=layer_decay)
        names = iter(_layer_group_names(model, skip))
        for g in groups:
            g["name"] = next(names)
            g.pop("use_fallback", None)
    if head_lr_mult != 1.0:
        groups = _split_head(model, groups, head_lr_mult)
    return [g for g in groups if g["params"]]


def _layer_group_names(model: nn.Module, skip: set[str]) -> list[str]:
    """Group names in the order timm's ``param_groups_layer_decay`` creates them."""
    from timm.models import group_parameters

    layer_map = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    layer_max = max(layer_map.values())
    seen: list[str] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = "no_decay" if p.ndim <= 1 or name in skip else "decay"
        group = f"layer_{layer_map.get(name, layer_max)}_{kind}"
        if group not in seen:
            seen.append(group)
    return seen


def _split_head(model: nn.Module, groups: list[dict[str, Any]], mult: float) -> list[dict[str, Any]]:
    head = {id(p) for n, p in model.named_parameters() if n in _head_param_names(model)}
    if not head:
        raise ValueError(f"param_groups: head_lr_mult needs a model with get_classifier(); {type(model).__name__} "
                         f"has no classifier parameters")
    out = []
    for g in groups:
        rest = [p for p in g["params"] if id(p) not in head]
        mine = [p for p in g["params"] if id(p) in head]
        out.append(dict(g, params=rest))
        if mine:
            out.append(dict(g, params=mine, lr_scale=g["lr_scale"] * mult, name=f"head_{g['name']}"))
    return out


def apply_lr_scale(groups: list[dict[str, Any]], lr: float) -> list[dict[str, Any]]:
    """Set each group's ``lr`` to ``lr * lr_scale`` (torch optimisers do not read ``lr_scale``)."""
    return [dict(g, lr=lr * g.get("lr_scale", 1.0)) for g in groups]
