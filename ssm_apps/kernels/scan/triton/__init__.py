"""Selective scan in Triton: forward and backward kernels behind a ``torch.autograd.Function``.

Same semantics as mamba_ssm's ``selective_scan_fn`` (see ``scan/api.py``)::

    dt_t = softplus(delta_t + delta_bias)              (bias / softplus optional)
    h_t  = exp(dt_t A) h_{t-1} + dt_t u_t B_t          (per channel, state n; h_{-1} = 0)
    out  = (sum_n C_t h_t + D u_t) * silu(z_t)         (D, z optional)

Design
------
Grid: (program, segment). A program owns (batch row, channel group, block of ``BD`` channels of
the group) and walks its segment of the sequence in sub-chunks of ``T`` steps, keeping the
state ``h`` (NB, BD) in registers (NB = n rounded up to a power of two). A sub-chunk is a
(T, NB, BD) register tile ordered so that Triton's default layout spreads the warp's lanes over
(NB, BD) only (``NB * BD >= 32``) and keeps all T steps of a (state, channel) pair in one
thread: ``tl.associative_scan`` along T with ``(a1, b1), (a2, b2) -> (a1 a2, a2 b1 + b2)`` then
lowers to one FMA per step with no shuffles. The carried state enters the scan as
``b_0 += a_0 h`` and leaves as the scan's last row (picked with a bitwise-or reduction, free
inside a thread). B and C of the channel group are read once per sub-chunk as (T, NB) tiles
shared by the program's channels ((NB, BD) when constant). All arithmetic is float32; exp is
``exp2`` with A pre-scaled by log2(e).

Sequence parallelism: when batch x channels is small (fewer than SEGMENT_MIN_ROWS rows, e.g.
b=1, d=1024, L=64k) the sequence is split into segments of whole checkpoint chunks. A first
pass computes each segment's end state from zero and its sum of dt, a tiny kernel chains them
(h_in[s+1] = exp(A sum dt) h_in[s] + h_end[s]), and the main pass runs every segment from its
entering state. The backward mirrors it for dh (pass 1: dh at each segment start with nothing
entering from later steps, and the sum of dt_{t+1}; then a reverse chain).

Saved for backward: the inputs (as given, made contiguous) and the float32 state at the
end of every ``TritonScanOptions.checkpoint_steps``-step chunk (256), laid out (b, n_chunks, n, d) -- that is
b*d*n*L/256 floats, independent of the tile sizes the autotuner picks.

Backward: each program walks the checkpoint chunks of its segment in reverse. For each chunk
it (1) re-runs the state recurrence from the saved state, writing the state before each
sub-chunk to a small per-program scratch buffer, then (2) walks the sub-chunks in reverse:
recomputes the forward scan from that state (and y, for the z gate), runs the reverse scan
``dh_t = C_t dy_t + a_{t+1} dh_{t+1}`` (pairs ``(a_{t+1}, C_t dy_t)``, ``a_{t+1}`` from delta
shifted one step, as flip / forward scan / flip; ``dh`` carried between sub-chunks in
registers), and forms du, ddelta (through softplus and delta_bias), dz, and partial sums of
dA, dD, d delta_bias (per batch row and segment, summed on the host), dB and dC (summed over
the program's channels, then ``atomic_add`` into float32 (b, g, n, L) buffers when B/C vary
in time; per-row partials (b, d, n) when constant). ``a_t h_{t-1}`` is formed as
``h_t - dt_t u_t B_t`` as in mamba_ssm. A gradient flowing into the returned last state seeds
``dh`` after the last step.

Fused pattern scan (``GATHER``, used by ``fused.selective_scan_2d`` / ``selective_scan_3d``): the
same kernels with a constexpr flag and an int32 (K, L) index map. Channel groups are the routes
(B/C (b, K, n, L) per pixel, group k = route k); step t of route k visits pixel idx[k, t]: u is
loaded from the map x (b, c, L) at that pixel, delta (b, K*c, L), B and C at that pixel of their
per-pixel rows (both through element strides, so x channels-last and delta in (b, L, K, c) memory
give a warp's lanes consecutive channels: coalesced for every route); the output is summed over
routes into a float32 map with relaxed ``atomic_add`` (``ATOMIC_OUT``; or a per-route buffer,
``TritonScanOptions(fused_atomic=False)``, measured slower). The backward gathers dout the same way, accumulates du
over routes with atomics and writes ddelta / dB / dC at the pixels. With GATHER off every branch
compiles away (plain scan unchanged: H100 VMamba-T row 0.333 / 0.984 ms fwd / bwd after).

Tuning: ``triton.autotune`` picks (T, BD) per kernel -- one warp per program -- keyed on the
bucketed (n, L, batch x channels), the flags and the dtypes; the pick is cached and later
calls launch it directly. Under ``TRITON_INTERPRET=1`` (CPU tests) a single small
configuration is used instead (``INTERPRET_CONFIG``).

Files: ``_common`` (jit helpers shared by the kernels, host-side argument helpers), ``fwd`` (forward
kernel and launch), ``bwd`` (backward kernel and launch), ``segments`` (sequence-parallel passes),
``autotune`` (tile configurations, cached launchers; options in ``scan.options``),
``function`` (the autograd Function). The GATHER Function lives with its caller in ``fused.triton``.
"""
from ..options import DEFAULT_OPTIONS, TritonScanOptions
from .function import SelectiveScanTritonFn, selective_scan_triton

__all__ = ["DEFAULT_OPTIONS", "SelectiveScanTritonFn", "TritonScanOptions", "selective_scan_triton"]
