"""Checks of data files before training, shared by every data module (no domain code here).

``check_image_files`` opens and decodes every image file of a data set once, with a progress bar,
and either reports every unreadable file at once (``BadFilesError``) or leaves them out and warns
with how many and which. Image data modules of any domain (classification, segmentation, codecs)
call it from their setup when the user sets ``verify: true`` / ``skip_bad_files: true``.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["BadFilesError", "check_image_files", "find_unreadable_images", "read_image_fully"]

T = TypeVar("T")
_SHOW = 10  # files named in a message


class BadFilesError(ValueError):
    """Data files that cannot be read; ``bad`` holds ``(path, reason)`` for every one of them."""

    def __init__(self, message: str, bad: list[tuple[Path, str]]) -> None:
        super().__init__(message)
        self.bad = bad


def read_image_fully(path: str | os.PathLike) -> None:
    """Opens ``path`` with PIL and decodes every pixel (``verify()`` alone misses truncated data)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()


def find_unreadable_images(paths: Sequence[str | os.PathLike], progress: bool = True, desc: str = "checking images",
                           reader: Callable[[str | os.PathLike], Any] = read_image_fully) -> list[tuple[Path, str]]:
    """``(path, reason)`` of every file of ``paths`` that ``reader`` cannot read, each file read once.

    Args:
        paths: the image files.
        progress: show a progress bar (tqdm, on standard error).
        desc: the progress bar's label.
        reader: reads one file, raising on failure (default: PIL open + full decode).
    """
    from tqdm.auto import tqdm

    bad = []
    for path in tqdm(paths, desc=desc, unit="file", disable=not progress or not paths, leave=False):
        try:
            reader(path)
        except Exception as err:  # noqa: BLE001 -- PIL raises OSError, ValueError, SyntaxError, ...
            bad.append((Path(path), f"{type(err).__name__}: {err}"))
    return bad


def _listing(bad: list[tuple[Path, str]]) -> str:
    shown = "; ".join(f"{path} ({reason})" for path, reason in bad[:_SHOW])
    return shown + (f"; ... and {len(bad) - _SHOW} more" if len(bad) > _SHOW else "")


def check_image_files(samples: dict[str, list[T]], path_of: Callable[[T], str | os.PathLike | None],
                      skip_bad_files: bool = False, progress: bool = True, owner: str = "data") -> dict[str, list[T]]:
    """Reads every image file of every split once; returns the samples without unreadable files.

    Args:
        samples: ``{split: [sample, ...]}``.
        path_of: the file of a sample (``None`` for a sample that is not a file, e.g. an in-memory image).
        skip_bad_files: leave unreadable files out and warn (how many, which) instead of raising.
        progress: show a progress bar.
        owner: the data module's name, for the messages.

    Raises:
        BadFilesError: some files are unreadable and not ``skip_bad_files``; the message names all of
            them (the first ten, and how many more) with the reason, and ``.bad`` lists every one.
    """
    files = sorted({str(p) for items in samples.values() for s in items if (p := path_of(s)) is not None})
    bad = find_unreadable_images(files, progress=progress, desc=f"{owner}: checking {len(files)} images")
    if not bad:
        return samples
    if not skip_bad_files:
        raise BadFilesError(f"{owner}: {len(bad)} of {len(files)} image files cannot be read: {_listing(bad)}. "
                            f"Fix or remove them, or set skip_bad_files: true to leave them out", bad)
    bad_set = {str(p) for p, _ in bad}
    kept = {split: [s for s in items if (p := path_of(s)) is None or str(p) not in bad_set]
            for split, items in samples.items()}
    per_split = ", ".join(f"{split} {len(items) - len(kept[split])}" for split, items in samples.items()
                          if len(items) != len(kept[split]))
    warnings.warn(f"{owner}: skipped {len(bad)} unreadable image file(s) of {len(files)} ({per_split}): "
                  f"{_listing(bad)}", UserWarning, stacklevel=2)
    return kept
