"""Codec tests run single-threaded: on the shared 2-core machine intra-op threads oversubscribe and the
small convolutions of the entropy model become ~15x slower."""
from __future__ import annotations

import warnings

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield
    torch.set_num_threads(threads)
