"""Training utilities shared by every domain's Lightning modules (no domain code here)."""
from .checkpoint_io import AtomicCheckpointIO

__all__ = ["AtomicCheckpointIO"]
