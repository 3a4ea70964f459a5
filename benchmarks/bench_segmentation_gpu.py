"""Segmentation speed / memory / FLOPs: SegMAN-T/S, VMamba-T + UperNet and convnext_tiny + UperNet (baseline).

    python benchmarks/bench_segmentation_gpu.py                       # H200: the full table, > 5 minutes
    python benchmarks/bench_segmentation_gpu.py --quick --device cpu  # smoke test (tiny sizes)
    python benchmarks/bench_segmentation_gpu.py --models segman_t convnext_t_upernet --no-flex   # the 2x target only
    python benchmarks/bench_segmentation_gpu.py --inputs 8x512x512 32x512x512 --cuda-graph   # + larger batch, graphs

Rows, per model and input (``--inputs``, default 512x512 batch 8 and 1024x2048 batch 2; bf16 autocast,
channels-first), in this order
(the JSON is rewritten after each, so a run cut short keeps what it measured): every model, SegMAN with each NA
backend of ``--na-backends`` (the fused Triton forward "triton", the PyTorch gathers "torch"), the NA check, the module profile, then SegMAN with the compiled ``flex_attention`` NA
(its compilations per shape take minutes). Each row: forward (inference, no grad) and forward+backward (train
mode) time, peak memory and img/s; with ``--cuda-graph`` also inference replayed from one CUDA graph (or what
stopped its capture); with ``--compile`` also inference through ``torch.compile`` (inductor; the NA and scan
kernels as graph breaks), with ``--cuda-graph`` replayed from a graph too. The 2x target is checked on the best
512x512 batch, mode against the same mode (eager, graphed, compiled, compiled + graphed). Also:

* NA check and micro-benchmark: every NA backend (``--na-backends``, + flex) on SegMAN-S stage shapes against the
  PyTorch NA in float64 (output and every gradient), forward and forward+backward times.
* GFLOPs at 512x512 (ADE20K heads, 150 classes) counted as the official ``get_flops.py`` does: fvcore
  multiply-accumulates (``torch.utils.flop_counter`` flops / 2) for convs / matmuls / NA (the gather
  backend's matmuls: k^2 * head_dim per query for q.k and for a.v, as NATTEN's handles), plus
  9*B*L*D*N + B*D*L per selective scan (D = routes x channels) and the SSM projections counted in the
  official low-rank form (``scan_macs``), against the paper (T 6.2, S 25.3 GFLOPs). fvcore also counts
  norms / upsampling / pooling, which torch's counter does not (a few percent).
* Module profile of a SegMAN-S training step (512x512, batch 8, the first of ``--na-backends``): every NA and scan call of one step is
  recorded and replayed alone (forward + backward), its share of the whole step reported (target < 30%).

Writes JSON to ``--out`` (default benchmarks/results/segmentation_<device>.json), prints tables; exits
non-zero when a correctness check fails.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import re
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ssm_apps.layers.ss2d as ss2d_module  # noqa: E402
from benchmarks.timing import mean_seconds  # noqa: E402
import ssm_apps.vision.segman as segman_module  # noqa: E402
from ssm_apps.layers.neighborhood_attention import neighborhood_attention_2d  # noqa: E402
from ssm_apps.vision.segman import SEGMAN_ADE_DECODERS, LASSMixer  # noqa: E402
from ssm_apps.vision.segmentation import SegmentationModel  # noqa: E402

MODELS = ["segman_t", "segman_s", "vmamba_t_upernet", "convnext_t_upernet"]
NA_TOLERANCE = 5e-2  # NA check: largest error / largest oracle value, bf16 inputs on CUDA
PAPER_GFLOPS = {"segman_t": 6.2, "segman_s": 25.3, "segman_b": 58.1}
TINY_SEGMAN = {"embed_dims": (16, 32, 48, 64), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 3, 4),
               "kernel_sizes": (3, 3, 3, 3), "img_size": 96}


def build(name: str, quick: bool, num_classes: int = 150) -> torch.nn.Module:
    if name.startswith("segman_"):
        variant = {"t": "tiny", "s": "small", "b": "base"}[name[-1]]
        kwargs = TINY_SEGMAN if quick else {}
        head = {"channels": 16, "feat_proj_dim": 16} if quick else SEGMAN_ADE_DECODERS[variant]
        return SegmentationModel(f"segman_encoder_{variant}", num_classes, "segman", head, backbone_kwargs=kwargs)
    backbone = {"vmamba_t_upernet": "vmamba_tiny_s1l8", "convnext_t_upernet": "convnext_tiny"}[name]
    kwargs = ({"dims": 16, "depths": (1, 1, 1, 1)} if backbone.startswith("vmamba") else {"dims": (16, 32, 64, 128)}) \
        if quick else {}
    return SegmentationModel(backbone, num_classes, "upernet", {"channels": 32 if quick else 512},
                             aux_head=True, backbone_kwargs=kwargs)


def set_na_backend(model: torch.nn.Module, backend: str) -> None:
    for m in model.modules():
        if isinstance(m, LASSMixer):
            m.na_backend = backend


def autocast(device: str):
    return torch.autocast(device, dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()


def graphed_forward_seconds(model, x, warmup, iters) -> float:
    """Seconds per inference forward replayed from one CUDA graph (bf16 autocast without its weight-cast
    cache, which a graph cannot keep); raises when the forward cannot be captured (a host sync)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, cache_enabled=False):
        with torch.cuda.stream(stream):
            for _ in range(3):  # kernels compiled and autotuned before the capture
                model(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(x)
    return mean_seconds(graph.replay, "cuda", warmup, iters)


def graphed_row(model, x, warmup, iters, prefix: str) -> dict:
    """``{prefix}_fwd_ms`` / ``{prefix}_fwd_img_s`` of the graphed forward, or ``{prefix}_error`` (what stopped
    the capture)."""
    try:
        t = graphed_forward_seconds(model, x, warmup, iters)
    except Exception as e:  # noqa: BLE001  (reported in the row)
        return {f"{prefix}_error": f"{type(e).__name__}: {e}"[:200]}
    return {f"{prefix}_fwd_ms": t * 1e3, f"{prefix}_fwd_img_s": x.shape[0] / t}


def compiled_inference(model, x, device, warmup, iters, cuda_graph: bool, freezing: bool = False) -> dict:
    """Inference through ``torch.compile(model)`` (inductor, default mode; the scan and NA kernels run as
    graph breaks; ``freezing``: inductor's inference freezing, weights folded as constants, e.g. BatchNorm into
    the convolutions): compile seconds, ms / img/s eager-compiled and (``cuda_graph``) replayed from a CUDA
    graph, and the largest difference to the eager output relative to its largest value."""
    import torch._inductor.config as inductor_config

    out = {"compile_freezing": freezing}
    compiled = torch.compile(model, dynamic=False)
    with torch.no_grad(), autocast(device), inductor_config.patch(freezing=freezing):
        reference = model(x).float()
        start = time.perf_counter()
        got = compiled(x).float()
        out["compile_s"] = time.perf_counter() - start
        out["compiled_rel_err"] = ((got - reference).abs().max() / reference.abs().max()).item()
        t = mean_seconds(lambda: compiled(x), device, warmup, iters)
    out["compiled_fwd_ms"], out["compiled_fwd_img_s"] = t * 1e3, x.shape[0] / t
    if cuda_graph and device == "cuda":
        out.update(graphed_row(compiled, x, warmup, iters, "compiled_graph"))
    return out


def bench_model(model, x, device, warmup, iters, cuda_graph: bool = False, compile_: bool = False,
                freezing: bool = False) -> dict:
    out = {}
    model.eval()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), autocast(device):
        t = mean_seconds(lambda: model(x), device, warmup, iters)
    out["fwd_ms"] = t * 1e3
    out["fwd_img_s"] = x.shape[0] / t
    out["fwd_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    if cuda_graph and device == "cuda":
        out.update(graphed_row(model, x, warmup, iters, "graph"))
    if compile_:
        try:
            out.update(compiled_inference(model, x, device, warmup, iters, cuda_graph, freezing))
        except Exception as e:  # noqa: BLE001  (reported in the row: what stops the compilation)
            out["compile_error"] = f"{type(e).__name__}: {e}"[:300]
    model.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        with autocast(device):
            loss = model(x).float().mean()
        loss.backward()

    t = mean_seconds(step, device, warmup, iters)
    model.zero_grad(set_to_none=True)
    out["train_ms"] = t * 1e3
    out["train_img_s"] = x.shape[0] / t
    out["train_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return out


def scan_macs(x: torch.Tensor, A: torch.Tensor) -> int:
    """The official count of one scan call, plus the official/ours difference of its projections.

    Official: 9*B*L*D*N + B*D*L (D = K routes x C channels). Our SSMs fold the low-rank dt projection
    into one dense (K, C, C) matrix per route (faster on GPUs); the official code runs x_proj
    (C -> R + 2N) and dt_proj (R -> C) per route, R = ceil(C / 16). FlopCounterMode has counted ours
    (B*L*K*(C*C + 2N*C) + the K*C*R*C weight product), so the difference to the official is added.
    """
    b, c, h, w = x.shape
    d, n = A.shape
    k, L, r = d // c, h * w, math.ceil(c / 16)
    official_proj = b * L * k * (c * (r + 2 * n) + r * c)
    our_proj = b * L * k * (c * c + 2 * n * c) + k * c * r * c
    return 9 * b * L * d * n + b * d * L + official_proj - our_proj


def count_gflops(model: torch.nn.Module, size: tuple[int, int], device: str) -> float:
    """Official-style GFLOPs (MACs) of one 1 x 3 x H x W forward, fp32."""
    from torch.utils.flop_counter import FlopCounterMode

    extra = [0]

    def stub(x, delta, A, *args, **kwargs):
        extra[0] += scan_macs(x, A)
        return torch.zeros_like(x)

    saved = segman_module.selective_scan_2d, ss2d_module.selective_scan_2d
    segman_module.selective_scan_2d = ss2d_module.selective_scan_2d = stub
    try:
        model.eval()
        set_na_backend(model, "torch")
        x = torch.randn(1, 3, *size, device=device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        segman_module.selective_scan_2d, ss2d_module.selective_scan_2d = saved
    return (counter.get_total_flops() / 2 + extra[0]) / 1e9


def _na_forward(q, k, v, ks, rpb, backend) -> None:
    with torch.no_grad():
        neighborhood_attention_2d(q, k, v, ks, rpb, backend=backend)


def _na_forward_backward(leaves, ks, rpb, backend) -> None:
    neighborhood_attention_2d(*leaves, ks, rpb, backend=backend).float().sum().backward()


def na_check(device: str, quick: bool, backends: list[str]) -> list[dict]:
    """Every NA backend of ``backends`` on SegMAN-S-like stage shapes (batch 8 at 512^2), bf16 on CUDA, against
    the PyTorch NA in float64 on the same inputs (the oracle): error of the output and of every gradient
    relative to the oracle's largest value, and forward / forward+backward timings."""
    shapes = [(2, 2, 16, 16, 16, 5)] if quick else [(8, 2, 128, 128, 32, 11), (8, 4, 64, 64, 36, 9),
                                                    (8, 8, 32, 32, 36, 7), (8, 16, 16, 16, 32, 7)]
    rows = []
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    for b, h, hh, ww, d, k in shapes:
        g = torch.Generator(device=device).manual_seed(0)
        q, kk, v = (torch.randn(b, h, hh, ww, d, device=device, dtype=dtype, generator=g) for _ in range(3))
        rpb = torch.randn(h, 2 * k - 1, 2 * k - 1, device=device, generator=g)
        row = {"shape": f"B{b} h{h} {hh}x{ww} d{d} k{k}"}
        oracle_leaves = [t.double().requires_grad_() for t in (q, kk, v, rpb)]
        oracle = neighborhood_attention_2d(*oracle_leaves[:3], k, oracle_leaves[3], backend="torch")
        grad_out = torch.randn(oracle.shape, device=device, dtype=torch.float64, generator=g)
        oracle.backward(grad_out)
        expected = [oracle.detach(), *(t.grad for t in oracle_leaves)]
        for backend in backends:
            try:
                leaves = [t.clone().requires_grad_() for t in (q, kk, v)]
                r = rpb.clone().requires_grad_()
                o = neighborhood_attention_2d(*leaves, k, r, backend=backend)
                o.backward(grad_out.to(o.dtype))
                got = [o.detach(), *(t.grad for t in (*leaves, r))]
                for name, a, e in zip(("out", "dq", "dk", "dv", "drpb"), got, expected):
                    row[f"{backend}_err_{name}"] = ((a.double() - e).abs().max() / e.abs().max()).item()
                fwd = functools.partial(_na_forward, q, kk, v, k, rpb, backend)
                fwd_bwd = functools.partial(_na_forward_backward, leaves, k, r, backend)
                row[f"{backend}_fwd_ms"] = mean_seconds(fwd, device, 2, 5) * 1e3
                row[f"{backend}_fwdbwd_ms"] = mean_seconds(fwd_bwd, device, 2, 5) * 1e3
            except Exception as e:  # noqa: BLE001  (reported as a row)
                row[f"{backend}_error"] = f"{type(e).__name__}: {e}"[:200]
        rows.append(row)
    return rows


def module_profile(device: str, quick: bool, na_backend: str) -> dict:
    """Share of NA and scan calls in one SegMAN-S training step with the ``na_backend`` NA (each call replayed
    alone, forward + backward)."""
    model = build("segman_s", quick).to(device).train()
    set_na_backend(model, na_backend)
    size, batch = ((96, 96), 2) if quick else ((512, 512), 8)
    x = torch.randn(batch, 3, *size, device=device)
    calls = {"na": [], "scan": []}
    real_na, real_scan = segman_module.neighborhood_attention_2d, segman_module.selective_scan_2d

    def rec_na(q, k, v, ks, rpb=None, backend="torch"):
        calls["na"].append((q.detach(), k.detach(), v.detach(), ks, None if rpb is None else rpb.detach(), backend))
        return real_na(q, k, v, ks, rpb, backend=backend)

    def rec_scan(*args, **kwargs):
        calls["scan"].append(([a.detach() if isinstance(a, torch.Tensor) else a for a in args],
                              {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}))
        return real_scan(*args, **kwargs)

    def step():
        with autocast(device):
            loss = model(x).float().mean()
        loss.backward()

    total = mean_seconds(step, device, 2, 3)
    segman_module.neighborhood_attention_2d, segman_module.selective_scan_2d = rec_na, rec_scan
    try:
        step()
    finally:
        segman_module.neighborhood_attention_2d, segman_module.selective_scan_2d = real_na, real_scan
    model.zero_grad(set_to_none=True)

    def replay_na():
        for q, k, v, ks, rpb, backend in calls["na"]:
            leaves = [t.clone().requires_grad_() for t in (q, k, v)]
            bias = None if rpb is None else rpb.clone().requires_grad_()
            real_na(*leaves, ks, bias, backend=backend).float().sum().backward()

    def replay_scan():
        for args, kwargs in calls["scan"]:
            args = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                    for a in args]
            real_scan(*args, **kwargs).float().sum().backward()

    na_t = mean_seconds(replay_na, device, 1, 3)
    scan_t = mean_seconds(replay_scan, device, 1, 3)
    return {"step_ms": total * 1e3, "na_ms": na_t * 1e3, "scan_ms": scan_t * 1e3, "na_share": na_t / total,
            "scan_share": scan_t / total, "na_calls": len(calls["na"]), "scan_calls": len(calls["scan"])}


def parse_input(text: str) -> tuple[tuple[int, int], int]:
    """"8x512x512" -> ((512, 512), 8)."""
    try:
        batch, height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--inputs: expected BATCHxHxW such as 8x512x512; got {text!r}") from None
    return (height, width), batch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny models and inputs (smoke test)")
    p.add_argument("--out", default=None)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS, help="default: all four")
    p.add_argument("--inputs", nargs="+", default=["8x512x512", "2x1024x2048"],
                   help="BATCHxHxW inputs (default 8x512x512 2x1024x2048; e.g. add 32x512x512)")
    p.add_argument("--cuda-graph", action="store_true", help="also time inference replayed from a CUDA graph")
    p.add_argument("--compile", action="store_true",
                   help="also time inference through torch.compile (every model; with --cuda-graph also replayed)")
    p.add_argument("--freezing", action="store_true",
                   help="with --compile: inductor's inference freezing (weights folded as constants)")
    p.add_argument("--rows-only", action="store_true",
                   help="only the model rows and GFLOPs (no NA check, no module profile, no flex rows)")
    p.add_argument("--na-backends", nargs="+", default=["triton", "torch"], choices=["triton", "torch"],
                   help="NA backends of the SegMAN rows before the flex ones (default: the fused Triton forward, "
                        "then the PyTorch gathers; other models are measured once)")
    p.add_argument("--flex", action=argparse.BooleanOptionalAction, default=True,
                   help="also the flex_attention NA: SegMAN rows and the NA check (minutes of compilation)")
    args = p.parse_args(argv)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    out = Path(args.out or REPO / f"benchmarks/results/segmentation_{re.sub(r'[^a-z0-9]+', '_', name.lower())}.json")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    iters, warmup = (2, 1) if args.quick else (args.iters, 3)
    # batch 2 at 1024x2048: the decoders' global-pool BatchNorm cannot train on one 1x1 value per channel
    inputs = [((96, 96), 2)] if args.quick else [parse_input(text) for text in args.inputs]
    models = args.models
    na_backends = args.na_backends if device == "cuda" else ["torch"]  # the Triton NA needs CUDA
    failures = 0
    result: dict = {"device": name, "torch": torch.__version__, "rows": [], "gflops": {}, "na_check": [],
                    "profile": None}

    def save() -> None:  # after every measurement: a run cut short keeps what it measured
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))

    def measure_rows(model: torch.nn.Module, mname: str, backend: str) -> None:
        if mname.startswith("segman"):
            set_na_backend(model, backend)
        for size, batch in inputs:
            row = {"model": mname, "na": backend if mname.startswith("segman") else "-",
                   "input": f"{batch}x{size[0]}x{size[1]}"}
            try:
                x = torch.randn(batch, 3, *size, device=device)
                row.update(bench_model(model, x, device, warmup, iters, args.cuda_graph, args.compile, args.freezing))
            except Exception as e:  # noqa: BLE001  (reported as a row)
                row["error"] = f"{type(e).__name__}: {e}"[:200]
                if device == "cuda":
                    torch.cuda.empty_cache()
            result["rows"].append(row)
            print(row, flush=True)
            save()

    # 1. every model with the PyTorch NA backend (the comparison the targets are about), 2. the NA check,
    # 3. the module profile, 4. SegMAN with flex NA last: its compilations per shape take minutes
    for mname in models:
        try:
            model = build(mname, args.quick).to(device)
            params = sum(p.numel() for p in model.parameters())
            flop_size = (96, 96) if args.quick else (512, 512)
            result["gflops"][mname] = {"gflops_512": count_gflops(model, flop_size, device),
                                       "paper": PAPER_GFLOPS.get(mname), "params_m": params / 1e6}
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            result["gflops"][mname] = {"error": f"{type(e).__name__}: {e}"[:200]}
            continue
        for backend in (na_backends if mname.startswith("segman") else na_backends[:1]):
            measure_rows(model, mname, backend)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()

    check_backends = na_backends + (["flex"] if device == "cuda" and args.flex else [])
    result["na_check"] = [] if args.rows_only else na_check(device, args.quick, check_backends)
    for row in result["na_check"]:  # bf16 inputs: the errors are bf16 rounding of values and gradients
        if any(key.endswith("_error") or ("_err_" in key and value > NA_TOLERANCE)
               for key, value in row.items()):
            failures += 1
            row["FAILED"] = True
    save()
    try:
        result["profile"] = None if args.rows_only else module_profile(device, args.quick, na_backends[0])
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        result["profile"] = {"error": f"{type(e).__name__}: {e}"[:200]}
    save()
    if device == "cuda" and args.flex and not args.rows_only:
        for mname in (m for m in models if m.startswith("segman")):
            model = build(mname, args.quick).to(device)
            measure_rows(model, mname, "flex")
            del model
            torch.cuda.empty_cache()

    print(f"\nDevice: {name}\n")
    print(f"{'model':<20} {'NA':<6} {'input':<14} {'fwd ms':>8} {'fwd img/s':>10} {'fwd GB':>7} "
          f"{'train ms':>9} {'train img/s':>11} {'train GB':>8}")
    def fmt(v, f):
        return "-" if v is None else format(v, f)
    for r in result["rows"]:
        if "error" in r:
            print(f"{r['model']:<20} {r['na']:<6} {r['input']:<14} ERROR {r['error']}")
            continue
        print(f"{r['model']:<20} {r['na']:<6} {r['input']:<14} {r['fwd_ms']:>8.2f} {r['fwd_img_s']:>10.1f} "
              f"{fmt(r['fwd_peak_gb'], '7.2f'):>7} {r['train_ms']:>9.2f} {r['train_img_s']:>11.1f} "
              f"{fmt(r['train_peak_gb'], '8.2f'):>8}")
        for label, prefix in (("  CUDA graph", "graph"), ("  compiled", "compiled"),
                              ("  compiled+graph", "compiled_graph")):
            if f"{prefix}_fwd_ms" in r:
                print(f"{'':<20} {'':<6} {label:<14} {r[f'{prefix}_fwd_ms']:>8.2f} {r[f'{prefix}_fwd_img_s']:>10.1f}")
            elif f"{prefix}_error" in r:
                print(f"{'':<20} {'':<6} {label:<14} failed: {r[f'{prefix}_error']}")
        if "compile_error" in r:
            print(f"{'':<20} {'':<6} {'  compiled':<14} failed: {r['compile_error']}")
    modes = {"eager": "fwd_img_s", "graph": "graph_fwd_img_s", "compiled": "compiled_fwd_img_s",
             "compiled_graph": "compiled_graph_fwd_img_s"}
    best: dict[tuple[str, str], float] = {}  # (model, mode) -> best img/s over the 512x512 inputs and NAs
    for r in result["rows"]:
        if "error" not in r and r["input"].endswith("x512x512"):
            for mode, key in modes.items():
                if key in r:
                    best[r["model"], mode] = max(best.get((r["model"], mode), 0.0), r[key])
    for mode in modes:
        if ("segman_t", mode) in best and ("convnext_t_upernet", mode) in best:
            ratio = best["segman_t", mode] / best["convnext_t_upernet", mode]
            result[f"segman_t_vs_convnext_fwd_speedup_512_{mode}"] = ratio
            print(f"\nSegMAN-T / convnext_tiny+UperNet inference img/s at 512^2 ({mode}, best batch): "
                  f"{ratio:.2f}x (target >= 2x)")
    print(f"\n{'model':<20} {'GFLOPs@512':>11} {'paper':>6} {'params M':>9}")
    for m, g in result["gflops"].items():
        if "error" in g:
            print(f"{m:<20} ERROR {g['error']}")
        else:
            print(f"{m:<20} {g['gflops_512']:>11.2f} {fmt(g['paper'], '6.1f'):>6} {g['params_m']:>9.2f}")
    print(f"\nNA backends vs the float64 PyTorch NA (error / oracle's largest value, tolerance {NA_TOLERANCE}):")
    for r in result["na_check"]:
        print("  " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    print(f"\nSegMAN-S training-step module profile: {result['profile']}")
    save()
    print(f"wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
