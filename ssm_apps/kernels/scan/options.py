"""Options of the Triton selective scan, passed down to every launch (no module-level switches)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TritonScanOptions:
    """How the Triton kernels of ``selective_scan`` / ``selective_scan_2d`` / ``selective_scan_3d`` run.

    The defaults are what models use; tests and benchmarks change them. Frozen and hashable: the
    autotuning cache is keyed by the fields that change the compiled kernels.

    Args:
        checkpoint_steps: steps between the float32 states saved for the backward pass (and the
            unit of sequence-parallel segments); a power of two >= 8 that every sub-chunk length
            the autotuner may pick divides (configurations with a longer sub-chunk are dropped).
        first_config_only: skip autotuning and run the first candidate tile (quick compiled checks).
        segments: the number of sequence-parallel segments (at most one per checkpoint chunk), or
            None to choose it from batch x channels.
        fused_atomic: fused pattern scan: sum the routes into the merged map with float32 atomics
            (True) or through a per-route (b, K*c, L) buffer summed afterwards (False).
    """

    checkpoint_steps: int = 256
    first_config_only: bool = False
    segments: int | None = None
    fused_atomic: bool = True

    def __post_init__(self) -> None:
        steps = self.checkpoint_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 8 or steps & (steps - 1):
            raise ValueError(f"TritonScanOptions: 'checkpoint_steps' must be a power of two >= 8; got {steps!r}")
        seg = self.segments
        if seg is not None and (isinstance(seg, bool) or not isinstance(seg, int) or seg < 1):
            raise ValueError(f"TritonScanOptions: 'segments' must be a positive int or None; got {seg!r}")


DEFAULT_OPTIONS = TritonScanOptions()


def check_options(fn: str, options: object) -> TritonScanOptions:
    """``options``, or the defaults for None; a TypeError naming ``fn`` for anything else."""
    if options is None:
        return DEFAULT_OPTIONS
    if not isinstance(options, TritonScanOptions):
        raise TypeError(
            f"{fn}: argument 'triton_options' must be a TritonScanOptions or None; got {type(options).__name__}"
        )
    return options
