"""Data loaders whose position can be saved and restored, for exact resume mid-epoch."""
from __future__ import annotations

import warnings
from typing import Any

from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

__all__ = ["stateful_loader"]

# torchdata 0.11 calls a torch API deprecated in torch 2.9 each time a loader iterates: not the user's concern
warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)


def stateful_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                    num_workers: int = 0, **kwargs: Any) -> StatefulDataLoader:
    """A ``torch.utils.data.DataLoader`` drop-in (torchdata's ``StatefulDataLoader``): Lightning saves
    its ``state_dict`` (sampler order and position, worker states) in every checkpoint and restores it
    on resume, so a run resumed mid-epoch sees the batches the interrupted run had not reached yet.

    Args:
        dataset: the map-style dataset.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (a stateful random sampler).
        drop_last: drop the last incomplete batch.
        num_workers: worker processes (workers are kept between epochs when > 0).
        **kwargs: any other ``DataLoader`` argument.
    """
    return StatefulDataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                              num_workers=num_workers, persistent_workers=num_workers > 0, **kwargs)
