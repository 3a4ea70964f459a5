"""Helpers shared by the tests: where the repository and ../shared live, loading the parity fixtures.

Import as ``from tests.helpers import REPO, shared_path, load_fixture``; the float64 oracles are in
``tests.helpers.oracle``, the DDP digest callback in ``tests.helpers.ddp``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
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
    """A parity fixture of ../shared/fixtures, loaded with ``weights_only=True``."""
    return torch.load(shared_path("fixtures", name), weights_only=True)
