"""Switches of the Triton scan read at launch time (tests and benchmarks change them)."""
from __future__ import annotations

#: Steps between saved states; every sub-chunk length T the autotuner may pick divides it.
CHECKPOINT_STEPS = 256
#: The one configuration run by the Triton interpreter (which cannot autotune).
INTERPRET_CONFIG = {"T": 8, "BD": 2, "num_warps": 1}
#: When true, skip autotuning and run the first candidate configuration (quick compiled checks).
FIRST_CONFIG_ONLY = False
#: Sequence parallelism: the number of segments, fixed (tests), or None for automatic.
FORCE_SEGMENTS: int | None = None
#: Fused pattern scan: sum the routes into the merged map with float32 atomics (True) or through a
#: per-route (b, K*c, L) buffer in spatial order summed afterwards (False).
FUSED_ATOMIC = True
