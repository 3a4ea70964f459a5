"""One convention for loading official checkpoints into ssm_apps models (every domain uses it).

A converter is three steps, always in this order:

1. :func:`unwrap_checkpoint` — a released file or a bare state dict -> a flat ``{key: tensor}`` dict:
   the first nested dict of ``state_dict_ema``, ``model_ema``, ``state_dict``, ``model`` (EMA weights
   preferred, as timm does), leading ``module.`` (DDP / DataParallel) prefixes stripped, and, with
   ``prefix="backbone."``, only the keys under that prefix (mmseg / mmdet segmentor layouts).
2. :func:`apply_rules` — rename keys with an ordered list of rules ``(regex, replacement)``; the first
   rule whose regex matches the start of a key (``re.match``) decides:

   * ``str`` — the replacement of ``re.sub`` on the matched prefix (back-references ``\\1`` allowed);
   * callable — ``fn(match) -> str | None``, the whole new key (``None`` drops the key);
   * ``None`` — the official tensor has no counterpart and is dropped on purpose.

   Keys no rule matches are returned as ``unmatched``.
3. :func:`finish_conversion` — the one checking step: every unmatched key, every key with no place in
   the model and every model key the checkpoint lacks is reported at once in a :class:`ConversionError`,
   except keys the caller names as ignorable (``ignore``: converted keys the model does not have) or
   fillable (``fill_missing``: model keys left at their own initial values, e.g. a new classifier head
   when a pretraining checkpoint is loaded for fine-tuning). Shapes must match, except 1×1 convolution
   weights against Linear weights, which are reshaped. The result records what was ignored and filled.

:func:`convert_checkpoint` runs the three steps; ``model.load_state_dict(result, strict=True)`` then
cannot fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "ConversionError",
    "ConvertedStateDict",
    "IDENTITY_RULES",
    "Rule",
    "apply_rules",
    "convert_checkpoint",
    "finish_conversion",
    "unwrap_checkpoint",
]

Replacement = str | Callable[[re.Match], str | None] | None
Rule = tuple[str, Replacement]

CHECKPOINT_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
IDENTITY_RULES: tuple[Rule, ...] = ((r"", ""),)  # keys already equal to the model's: keep every key


class ConversionError(ValueError):
    """An official checkpoint does not fit the model it is converted for (the message lists every key)."""


class ConvertedStateDict(dict):
    """A converted state dict (``dict`` of tensors) with the report of :func:`finish_conversion`.

    Attributes:
        ignored: converted keys dropped because the model has no such module (sorted).
        filled: model keys absent from the checkpoint, kept at the model's own values (sorted).
        dropped: official keys dropped by ``None`` rules (sorted).
    """

    def __init__(self, data: Mapping[str, torch.Tensor], ignored: Iterable[str] = (), filled: Iterable[str] = (),
                 dropped: Iterable[str] = ()) -> None:
        super().__init__(data)
        self.ignored = sorted(ignored)
        self.filled = sorted(filled)
        self.dropped = sorted(dropped)


def unwrap_checkpoint(checkpoint: Mapping[str, Any], prefix: str | None = None) -> dict[str, torch.Tensor]:
    """A released checkpoint or a bare state dict -> a flat state dict of tensors.

    Args:
        checkpoint: a state dict, or a dict holding one under ``state_dict_ema``, ``model_ema``,
            ``state_dict`` or ``model`` (the first present wins).
        prefix: if given (e.g. ``"backbone."``), keep only the keys that start with it, with the prefix
            removed; a checkpoint holding no such key raises :class:`ConversionError`.

    Returns:
        ``{key: tensor}`` with every leading ``module.`` stripped; non-tensor entries are left out.
    """
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f"checkpoint must be a mapping of tensors; got {type(checkpoint).__name__}")
    sd: Any = checkpoint
    for key in CHECKPOINT_KEYS:
        if isinstance(sd.get(key), Mapping):
            sd = sd[key]
            break
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    if prefix is not None:
        picked = {k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)}
        if not picked:
            raise ConversionError(f"checkpoint has no key starting with {prefix!r} (first keys: {list(out)[:5]})")
        out = picked
    return out


def apply_rules(
    state_dict: Mapping[str, torch.Tensor],
    rules: Sequence[Rule],
) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str], list[str]]:
    """Rename keys with the first matching rule (see the module docstring for the rule format).

    Args:
        state_dict: official keys -> tensors.
        rules: ordered ``(regex, replacement)`` pairs.

    Returns:
        ``(mapped, unmatched, origins, dropped)``: new key -> tensor; official keys no rule matched;
        new key -> official key; official keys dropped by a ``None`` rule or a callable returning ``None``.
    """
    mapped: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    origins: dict[str, str] = {}
    dropped: list[str] = []
    compiled = [(re.compile(p), r) for p, r in rules]
    for key, value in state_dict.items():
        for pattern, repl in compiled:
            m = pattern.match(key)
            if m is None:
                continue
            if repl is None:
                new = None
            elif callable(repl):
                new = repl(m)
            else:
                new = m.expand(repl) + key[m.end():]
            if new is None:
                dropped.append(key)
            else:
                if new in mapped:
                    raise ConversionError(f"keys {origins[new]!r} and {key!r} both convert to {new!r}")
                mapped[new], origins[new] = value, key
            break
        else:
            unmatched.append(key)
    return mapped, unmatched, origins, dropped


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(re.match(p, key) for p in patterns)


def finish_conversion(
    mapped: Mapping[str, torch.Tensor],
    model: nn.Module,
    family: str,
    unmatched: Iterable[str] = (),
    origins: Mapping[str, str] | None = None,
    ignore: Sequence[str] = (),
    fill_missing: Sequence[str] = (),
    dropped: Iterable[str] = (),
) -> ConvertedStateDict:
    """Check converted keys against ``model.state_dict()`` and report every problem at once.

    Args:
        mapped: converted key -> tensor.
        model: the model the state dict is for.
        family: model family named in error messages (e.g. ``"VMamba"``).
        unmatched: official keys no rule knew (each is an error).
        origins: converted key -> official key, to name the source in messages.
        ignore: regexes of converted keys to drop when the model has no such key.
        fill_missing: regexes of model keys that may be absent; they keep the model's own values.
        dropped: official keys dropped on purpose (recorded in the result).

    Returns:
        A :class:`ConvertedStateDict` that ``model.load_state_dict(..., strict=True)`` accepts.

    Raises:
        ConversionError: listing unmatched keys, keys with no place in the model, missing keys and
            shape mismatches.
    """
    own = model.state_dict()
    problems: list[str] = []
    unmatched = sorted(unmatched)
    if unmatched:
        problems.append(f"keys no conversion rule knows: {unmatched[:20]}" + (" ..." if len(unmatched) > 20 else ""))
    out: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for k, v in mapped.items():
        source = f"{origins[k]!r} (converted to {k!r})" if origins and k in origins and origins[k] != k else repr(k)
        if k not in own:
            if _matches(k, ignore):
                ignored.append(k)
            else:
                problems.append(f"key {source} has no place in this model")
            continue
        target = own[k]
        if v.shape != target.shape:
            if v.numel() == target.numel() and v.dim() in (2, 4) and target.dim() in (2, 4):
                v = v.reshape(target.shape)  # 1x1 conv weights <-> Linear weights
            else:
                problems.append(f"key {source}: shape {tuple(v.shape)}, the model expects {tuple(target.shape)}")
                continue
        out[k] = v
    filled: list[str] = []
    missing: list[str] = []
    for k, v in own.items():
        if k in out or k in mapped:
            continue
        if _matches(k, fill_missing):
            out[k] = v.clone()
            filled.append(k)
        else:
            missing.append(k)
    if missing:
        more = " ..." if len(missing) > 20 else ""
        problems.append(f"model keys missing from the checkpoint: {missing[:20]}{more}")
    if problems:
        raise ConversionError(f"{family} checkpoint does not fit the model: " + "; ".join(problems))
    return ConvertedStateDict(out, ignored=ignored, filled=filled, dropped=dropped)


def convert_checkpoint(
    checkpoint: Mapping[str, Any],
    model: nn.Module,
    rules: Sequence[Rule],
    family: str,
    prefix: str | None = None,
    ignore: Sequence[str] = (),
    fill_missing: Sequence[str] = (),
) -> ConvertedStateDict:
    """:func:`unwrap_checkpoint` -> :func:`apply_rules` -> :func:`finish_conversion` (arguments as there)."""
    sd = unwrap_checkpoint(checkpoint, prefix=prefix)
    mapped, unmatched, origins, dropped = apply_rules(sd, rules)
    return finish_conversion(mapped, model, family, unmatched, origins, ignore=ignore, fill_missing=fill_missing,
                             dropped=dropped)
