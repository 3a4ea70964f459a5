"""Chunked selective scan in plain PyTorch (the "torch" backend).

The sequence is cut into chunks of T steps. Inside a chunk every state is
computed at once from the cumulative log-decay; between chunks only the state
(b, d, n) is carried. With Delta_t = sum_{s<=t} delta_s (within the chunk), the
log-decay of state n is A_n * Delta_t, so for s <= t

    h_t = exp(A (Delta_t - m)) * [ exp(A m) h_0 + sum_{s<=t} exp(A (m - Delta_s)) delta_s u_s B_s ]

for any reference m; m is the midpoint of Delta's range, which bounds every
exponent by |A| * range / 2. The chunk length is chosen per call (halved from
``chunk`` as needed) so that bound stays below ``MAX_EXPONENT``: the exps
neither overflow nor underflow in float32. Memory is O(b * d * n * T) in the
forward pass; with autograd each chunk is recomputed in the backward pass from
its saved boundary state (activation checkpointing), so the backward pass
stores O(b * d * n * L / T) states rather than O(b * d * n * L).
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from .._backend import needs_autograd
from .layout import grouped_bc

DEFAULT_CHUNK = 64
MAX_EXPONENT = 40.0


def choose_chunk(delta: torch.Tensor, A: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> int:
    """Largest power-of-two chunk <= ``chunk`` whose exponents stay within +-MAX_EXPONENT.

    delta: (b, d, L) float32; A: (d, n) float32.
    """
    length = delta.shape[-1]
    a_max = A.detach().abs().amax().item()
    csum = torch.nn.functional.pad(delta.detach().abs().cumsum(-1), (1, 0))
    t = 1 << (max(1, min(chunk, length)) - 1).bit_length()
    while t > 1:
        starts = torch.arange(0, length, t, device=delta.device)
        spans = csum[..., (starts + t).clamp_max(length)] - csum[..., starts]
        if a_max * spans.amax().item() / 2 <= MAX_EXPONENT:
            break
        t //= 2
    return t


def _scan_chunk(
    u: torch.Tensor, dl: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk. u, dl: (b, G, dg, T); A: (1, G, dg, 1, n); B, C broadcast to (b, G, dg, T, n);
    h0: (b, G, dg, n). Returns y (b, G, dg, T) and the state after the chunk (b, G, dg, n)."""
    x = (dl * u).unsqueeze(-1) * B
    if dl.shape[-1] == 1:  # a single step: plain recurrence, no factorisation needed
        h = torch.exp(dl.unsqueeze(-1) * A) * h0.unsqueeze(-2) + x
        return (h * C).sum(-1), h[..., -1, :]
    cum = dl.cumsum(-1)
    mid = ((cum.amax(-1, keepdim=True).clamp_min(0) + cum.amin(-1, keepdim=True).clamp_max(0)) / 2).detach()
    decay = torch.exp((cum - mid).unsqueeze(-1) * A)  # exp(A (Delta_t - m))
    acc = torch.cumsum(x / decay, dim=-2) + (h0 * torch.exp(mid * A.squeeze(-2))).unsqueeze(-2)
    h = decay * acc
    return (h * C).sum(-1), h[..., -1, :]


def scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """u, delta: (b, d, L) float32 (delta already biased/softplus-ed); A: (d, n) float32;
    B, C: any accepted layout. Returns y (b, d, L) float32 and the last state (b, d, n) float32."""
    batch, dim, length = u.shape
    d_state = A.shape[1]
    groups, Bv, Cv = grouped_bc(B, C, dim)
    shape4 = (batch, groups, dim // groups, length)
    u4, dl4 = u.reshape(shape4), delta.reshape(shape4)
    A5 = A.reshape(1, groups, dim // groups, 1, d_state)
    step = choose_chunk(delta, A, chunk)
    # recomputing chunks in the backward pass only saves memory when there are several
    recompute = step < length and needs_autograd(u, delta, A, B, C)
    n_chunks = -(-length // step)

    def chunks(x: torch.Tensor, dim: int) -> list[torch.Tensor]:
        # split once (one concatenating backward) rather than slicing per chunk, whose backward
        # would build a full-length zero tensor per chunk
        return list(torch.split(x, step, dim=dim)) if x.shape[dim] > 1 else [x] * n_chunks

    pieces = zip(chunks(u4, -1), chunks(dl4, -1), chunks(Bv, -2), chunks(Cv, -2))
    h = u.new_zeros(batch, groups, dim // groups, d_state)
    ys = []
    for u_c, dl_c, B_c, C_c in pieces:
        args = (u_c, dl_c, A5, B_c, C_c, h)
        y, h = checkpoint(_scan_chunk, *args, use_reentrant=False) if recompute else _scan_chunk(*args)
        ys.append(y)
    return torch.cat(ys, dim=-1).reshape(batch, dim, length), h.reshape(batch, dim, d_state)
