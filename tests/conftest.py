"""Shared test helpers: where ../shared lives, loading its fixtures; the Triton interpreter switched on."""
from __future__ import annotations

import os
from pathlib import Path

# The Triton kernels are tested on CPU by Triton's interpreter, which must be on before anything
# imports triton (lightning does, through torch._dynamo); pytest imports this file first.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file under ../shared; skips (with the reason) only when ../shared is absent outside CI."""
    path = SHARED.joinpath(*parts)
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"CI must have ../shared beside the checkout; {SHARED} is missing")
        pytest.skip(f"../shared is not beside this checkout ({SHARED} missing)")
    if not path.exists():
        raise FileNotFoundError(f"expected shared file {path}")
    return path


def load_fixture(name: str) -> dict:
    return torch.load(shared_path("fixtures", name), weights_only=True)
