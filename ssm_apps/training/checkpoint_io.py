"""Checkpoint files: written atomically and durably, read back with errors that name the file.

* ``AtomicCheckpointIO.save_checkpoint`` writes a temporary file in the target folder, fsyncs it,
  renames it over the target and fsyncs the folder, so that a crash (or power loss) at any point
  leaves either the old or the new checkpoint, never a truncated one. The file gets the permissions
  a plain ``open(path, "w")`` would (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.
* ``AtomicCheckpointIO.load_checkpoint`` raises ``CheckpointError`` naming the file for a missing,
  truncated or non-checkpoint file; ``check_checkpoint_matches`` names the file and the expected
  model when a checkpoint belongs to another model.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

__all__ = ["AtomicCheckpointIO", "CheckpointError", "check_checkpoint_matches", "load_checkpoint_file"]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: missing, damaged, not a checkpoint, or another model's."""


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Makes a rename inside ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; the data itself is synced
        pass
    finally:
        os.close(fd)


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = None,
                         weights_only: bool | None = None, require_state_dict: bool = True) -> dict[str, Any]:
    """``torch.load`` of a Lightning checkpoint, with ``CheckpointError`` naming ``path`` when the
    file is missing, unreadable, truncated, not a ``torch.save`` file, not a dict, or (with
    ``require_state_dict``) a dict without a ``state_dict`` entry.

    Args:
        path: the checkpoint file.
        require_state_dict: refuse a dict without ``state_dict`` (every training checkpoint has one).
        map_location: as ``torch.load``.
        weights_only: as ``torch.load``; ``None`` = ``False`` (our own checkpoints hold optimizer,
            loop and callback states; load only files you trust).
    """
    path = Path(path)
    expected = "a checkpoint written by ssm-apps/Lightning (torch.save of a dict with 'state_dict')"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=bool(weights_only))
    except Exception as err:  # noqa: BLE001 -- torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise CheckpointError(f"{path}: cannot read the checkpoint ({size} bytes; truncated or damaged?): "
                              f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; "
                              f"expected {expected}") from err
    if not isinstance(checkpoint, Mapping) or (require_state_dict and "state_dict" not in checkpoint):
        got = f"a dict with keys {sorted(map(str, checkpoint))[:8]}" if isinstance(checkpoint, Mapping) \
            else f"a {type(checkpoint).__name__}"
        raise CheckpointError(f"{path}: not a training checkpoint: it holds {got}; expected {expected}")
    return dict(checkpoint)


def check_checkpoint_matches(path: str | os.PathLike, checkpoint: Mapping[str, Any], module: nn.Module) -> None:
    """Raises ``CheckpointError`` (naming ``path``, ``module``'s class and the first differences)
    when the checkpoint's ``state_dict`` does not have exactly ``module``'s keys and shapes.

    Args:
        path: the checkpoint file (for the message).
        checkpoint: the loaded checkpoint (``load_checkpoint_file``).
        module: the model the checkpoint is meant for.
    """
    saved = checkpoint["state_dict"]
    wanted = module.state_dict()
    missing = [k for k in wanted if k not in saved]
    unexpected = [k for k in saved if k not in wanted]
    shapes = [f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(v.shape)}"
              for k, v in wanted.items()
              if k in saved and hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} parameter(s) missing (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (e.g. {shapes[:2]})")
    saved_from = checkpoint.get("hyper_parameters", {}) or {}
    origin = f" (saved from {saved_from.get('_class_path', 'another model')})" if saved_from else ""
    raise CheckpointError(f"{path}: checkpoint of another model{origin}: expected the {len(wanted)} tensors of "
                          f"{type(module).__name__} as configured; " + "; ".join(parts))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file in the target folder, fsyncs it, renames it over the target and
    fsyncs the folder; the file is created with the umask's permissions. Loads with
    ``load_checkpoint_file`` (errors name the file)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO: 'storage_options' is not supported; got {storage_options!r}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, 0o666 & ~_current_umask())
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location, weights_only=weights_only,
                                    require_state_dict=False)
