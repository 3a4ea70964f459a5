"""SSAMBA-tiny versus an SSAST-tiny-like transformer: forward time and peak memory versus sequence length.

    python benchmarks/bench_audio_efficiency.py [--out benchmarks/results] [--device cuda]
    python benchmarks/bench_audio_efficiency.py --quick --device cpu          # smoke test

The SSAMBA paper (Table 5 / Fig. 3) reports SSAMBA-tiny 92.7 % faster and 95.4 % less memory than
SSAST-tiny at 22k tokens, batch 2, with SSAST's naive attention. Both models here are 12 x 192 wide
encoders run on (B, L, 192) token sequences (the patch embedding is the same for both and excluded):

- ``ssamba``: the SSAMBA-tiny encoder (24 Vim blocks = 12 bidirectional pairs, d_state 16, expand 2),
  ``ssm_apps.audio.SSAMBA``'s layers and final norms (Triton scan on CUDA);
- ``ssast_naive``: 12 pre-norm ViT blocks, 3 heads of 64, MLP x4, attention as ``softmax(q k^T / 8) v``
  written out (the L x L matrix is materialised, as timm 0.4.5 in SSAST);
- ``ssast_sdpa``: the same blocks with ``torch.nn.functional.scaled_dot_product_attention`` (flash /
  memory-efficient kernels, what a user picks today).

Per model, dtype (fp32, bf16 autocast) and length (1k ... 32k tokens, or until out of memory): eval-mode
forward under ``torch.inference_mode``, 3 warm-up calls excluded, median of ``--iters`` timed calls
(CUDA events), peak memory above the weights (``torch.cuda.max_memory_allocated``). A first check
asserts that the naive and SDPA transformers agree (same weights) and that the SSAMBA encoder equals
the model's own ``forward_features`` path. Prints a table, writes ``audio_efficiency_<gpu>.json``
and a PNG plot, and the ratios at 22k tokens.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.timing import median_seconds  # noqa: E402
from ssm_apps.audio import ssamba_tiny

WIDTH, DEPTH, HEADS = 192, 12, 3
LENGTHS = [1024, 2048, 4096, 8192, 12288, 16384, 22016, 24576, 32768]
REF_LENGTH = 22016  # 22k tokens (the paper's comparison point; a multiple of 128)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, sdpa: bool) -> None:
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
            y = attn.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, sdpa: bool) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, sdpa)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    """SSAST-tiny-like encoder: 12 pre-norm ViT blocks (192 wide, 3 heads), final LayerNorm."""

    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[Block(WIDTH, HEADS, sdpa) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(x))


class SSAMBAEncoder(nn.Module):
    """SSAMBA-tiny's token encoder: ``_encode`` (24 Vim blocks in 12 summed pairs, norm_f) + second norm_f."""

    def __init__(self) -> None:
        super().__init__()
        self.model = ssamba_tiny(input_tdim=128, patch_stride=16, drop_path_rate=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.norm_f(self.model._encode(x))


def check(models: dict[str, nn.Module], device: torch.device) -> dict[str, float]:
    """Correctness before timing: naive == SDPA attention; SSAMBA encoder == SSAMBA.forward_features."""
    torch.manual_seed(0)
    x = torch.randn(2, 300, WIDTH, device=device)
    with torch.inference_mode():
        attn_err = (models["ssast_naive"](x) - models["ssast_sdpa"](x)).abs().max().item()
        m = models["ssamba"].model
        fbank = torch.randn(2, 128, 128, device=device)
        tokens = m.patch_embed(fbank.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2)
        tokens = torch.cat([m.cls_token.expand(2, -1, -1), tokens], 1) + m.pos_embed
        enc_err = (models["ssamba"](tokens) - m.forward_features(fbank)).abs().max().item()
    if attn_err > 1e-3 or enc_err > 1e-4:
        raise SystemExit(f"check failed: naive vs SDPA attention {attn_err:.2e}, SSAMBA encoder {enc_err:.2e}")
    return {"naive_vs_sdpa_max_abs": attn_err, "ssamba_encoder_vs_forward_features_max_abs": enc_err}


def measure(model: nn.Module, length: int, batch: int, dtype: torch.dtype, device: torch.device,
            iters: int) -> dict:
    cuda = device.type == "cuda"
    x = torch.randn(batch, length, WIDTH, device=device)

    def run() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            model(x)

    try:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        seconds = median_seconds(run, "cuda" if cuda else "cpu", iters)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else float("nan")
        return {"seconds": seconds, "peak_mib": peak, "oom": False}
    except torch.OutOfMemoryError:
        if cuda:
            torch.cuda.empty_cache()
        return {"seconds": None, "peak_mib": None, "oom": True}


def plot(rows: list[dict], path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (name, dtype), style in zip(sorted({(r["model"], r["dtype"]) for r in rows}), ["-o", "--o", "-s", "--s", "-^", "--^"]):
        sel = [r for r in rows if r["model"] == name and r["dtype"] == dtype and not r["oom"]]
        axes[0].plot([r["length"] for r in sel], [r["seconds"] * 1e3 for r in sel], style, label=f"{name} {dtype}")
        mem = [r for r in sel if r["peak_mib"] is not None and r["peak_mib"] == r["peak_mib"]]  # not NaN (CPU)
        if mem:
            axes[1].plot([r["length"] for r in mem], [r["peak_mib"] for r in mem], style, label=f"{name} {dtype}")
    for ax, ylabel in zip(axes, ("forward time (ms, median)", "peak memory (MiB; CUDA only)")):
        ax.set_xlabel("tokens")
        ax.set_ylabel(ylabel)
        ax.set_xscale("log", base=2)
        if ax.lines:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"SSAMBA-tiny vs SSAST-tiny-like transformer, batch 2, {device}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--lengths", type=int, nargs="*", default=LENGTHS)
    p.add_argument("--quick", action="store_true", help="lengths 256 and 512, 2 iterations (smoke test)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_audio_efficiency: no CUDA device; use --device cpu --quick", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    lengths, iters = ([256, 512], 2) if args.quick else (args.lengths, args.iters)
    ref_length = lengths[-1] if args.quick else REF_LENGTH
    torch.manual_seed(0)
    models = {"ssamba": SSAMBAEncoder(), "ssast_naive": TransformerEncoder(sdpa=False)}
    models["ssast_sdpa"] = TransformerEncoder(sdpa=True)
    models["ssast_sdpa"].load_state_dict(models["ssast_naive"].state_dict())
    for m in models.values():
        m.to(device).eval()
    checks = check(models, device)
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device {name}; parameters {params}; checks {checks}")
    rows = []
    start = time.perf_counter()
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for model_name, model in models.items():
            stop = False
            for length in lengths:
                if stop:  # a longer sequence cannot fit either
                    rows.append({"model": model_name, "dtype": dtype_name, "length": length, "seconds": None,
                                 "peak_mib": None, "oom": True})
                    continue
                r = measure(model, length, args.batch, dtype, device, iters)
                stop = r["oom"]
                rows.append({"model": model_name, "dtype": dtype_name, "length": length, **r})
                shown = "OOM" if r["oom"] else f"{r['seconds'] * 1e3:9.2f} ms  {r['peak_mib']:10.1f} MiB"
                print(f"{model_name:12s} {dtype_name} L={length:6d}  {shown}", flush=True)
    ratios = {}
    for dtype_name in ("fp32", "bf16"):
        at = {r["model"]: r for r in rows if r["dtype"] == dtype_name and r["length"] == ref_length}
        s = at.get("ssamba")
        for base in ("ssast_naive", "ssast_sdpa"):
            b = at.get(base)
            if s and b and not s["oom"] and not b["oom"]:
                ratios[f"{dtype_name}_{base}"] = {
                    "faster_pct": 100 * (1 - s["seconds"] / b["seconds"]),
                    "less_memory_pct": 100 * (1 - s["peak_mib"] / b["peak_mib"]) if device.type == "cuda" else None,
                    "speedup_x": b["seconds"] / s["seconds"]}
            else:
                ratios[f"{dtype_name}_{base}"] = "out of memory or not measured"
    print(f"\nAt {ref_length} tokens (batch {args.batch}), SSAMBA-tiny vs the transformer (paper: 92.7 % faster, "
          f"95.4 % less memory than naive-attention SSAST-tiny):")
    for key, r in ratios.items():
        if isinstance(r, dict):
            mem = f"{r['less_memory_pct']:6.1f} % less memory" if r["less_memory_pct"] is not None else ""
            print(f"  {key:18s} {r['faster_pct']:6.1f} % faster ({r['speedup_x']:.2f}x)  {mem}")
        else:
            print(f"  {key:18s} {r}")
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    json_path = args.out / f"audio_efficiency_{slug}{suffix}.json"
    json_path.write_text(json.dumps({"device": name, "torch": torch.__version__, "batch": args.batch, "iters": iters,
                                     "parameters": params, "checks": checks, "ref_length": ref_length,
                                     "ratios_at_ref_length": ratios, "rows": rows,
                                     "seconds_total": time.perf_counter() - start}, indent=2))
    plot(rows, args.out / f"audio_efficiency_{slug}{suffix}.png", name)
    print(f"wrote {json_path} and the PNG beside it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
