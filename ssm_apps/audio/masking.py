"""Patch masks for SSAST / SSAMBA masked spectrogram patch modelling.

Cluster masking, as the official pretraining draws it: one block side ``c`` in {3, 4, 5} per clip;
blocks of ``c x c`` patches whose top-left patch is drawn uniformly over the N patches are added until
more than ``num_masked`` distinct patches are covered; a block is laid out on the (frequency, time) patch
grid as ``start + t_dim * i + j`` (i, j < c), so a block that runs past the last time column continues
on the next frequency row, and patch 0 is never masked (the official test ``index > 0``). The mask is
the ``num_masked`` smallest covered indices, ascending (the order in which CPython iterates the
official ``set`` of small integers). With the same ``random.Random`` state, the draws equal the official
ones (the SSAMBA fixture's recorded masks are reproduced exactly).
"""
from __future__ import annotations

import random

import torch

MIN_CLUSTER = 3
NUM_CLUSTER_SIZES = 3  # sides 3, 4, 5


def check_num_masked(num_masked: int, num_patches: int) -> None:
    """Cluster masking needs ``1 <= num_masked <= num_patches - 2`` (patch 0 is never masked)."""
    if not 1 <= num_masked <= num_patches - 2:
        raise ValueError(f"argument 'num_masked' must be in [1, num_patches - 2 = {num_patches - 2}] for "
                         f"{num_patches} patches; got {num_masked}")


def cluster_mask(num_patches: int, num_masked: int, t_dim: int, rng: random.Random | None = None) -> torch.Tensor:
    """Indices of the masked patches of one clip, drawn by cluster masking (see the module doc).

    Args:
        num_patches: N = f_dim * t_dim patches of the clip.
        num_masked: how many patches to mask.
        t_dim: patches along time (the grid's row length).
        rng: source of randomness (the module ``random`` when None, as the official code).

    Returns:
        (num_masked,) int64, ascending.
    """
    check_num_masked(num_masked, num_patches)
    draw = rng if rng is not None else random  # the module's functions share the global state
    side = draw.randrange(NUM_CLUSTER_SIZES) + MIN_CLUSTER
    covered: set[int] = set()
    while len(covered) <= num_masked:
        start = draw.randrange(num_patches)
        covered.update(idx for idx in (start + t_dim * i + j for i in range(side) for j in range(side))
                       if 0 < idx < num_patches)
    return torch.tensor(sorted(covered)[:num_masked], dtype=torch.long)


def random_mask(num_patches: int, num_masked: int, rng: random.Random | None = None) -> torch.Tensor:
    """Unclustered masking (the official ``gen_maskid_frame``): ``num_masked`` distinct patches uniformly."""
    if not 1 <= num_masked <= num_patches:
        raise ValueError(f"argument 'num_masked' must be in [1, {num_patches}]; got {num_masked}")
    draw = rng if rng is not None else random  # the module's functions share the global state
    return torch.tensor(draw.sample(range(num_patches), num_masked), dtype=torch.long)


def draw_masks(batch: int, num_patches: int, num_masked: int, t_dim: int, cluster: bool = True,
               rng: random.Random | None = None) -> torch.Tensor:
    """(batch, num_masked) int64 masks, one independent draw per clip."""
    if cluster:
        return torch.stack([cluster_mask(num_patches, num_masked, t_dim, rng) for _ in range(batch)])
    return torch.stack([random_mask(num_patches, num_masked, rng) for _ in range(batch)])
