"""GPU throughput of the vision backbones against official VMamba (H200 figures) and timm baselines.

    python benchmarks/bench_vision_gpu.py [--models vmamba_tiny_s1l8 convnext_tiny ...] [--batch 128]
        [--steps 50] [--tf32 on|off] [--cuda-graph] [--norm-backend torch|triton] [--scan-backend ...]
    python benchmarks/bench_vision_gpu.py --device cpu --models vmamba_tiny_s1l8 --batch 1 --size 32 \\
        --steps 1 --warmup 0 --iters 1 --profile ''   # smoke run (~2 min): the code path, timings mean nothing

Per model, random inputs at ``--size`` (224), batch ``--batch`` (128):
- inference img/s: eval mode, no_grad, fp32 and bf16 autocast (median of ``--iters`` calls);
- training: bf16 autocast forward + backward + AdamW step, ``--steps`` (50) timed steps after
  ``--warmup`` (5). Per step: the CUDA-event time (GPU time from the step's first to last enqueued
  work), the host time to enqueue the step, and the wall time to the step's end (synchronised).
  Reported: median, p90, p90 / median (the issue's stability target: <= 1.10), min, max; and the
  img/s of the same number of steps run back to back (one synchronisation at the end);
- ``--compile``: each model also through ``torch.compile`` (inductor), inference and training;
- ``--cuda-graph``: the same training step captured whole in one CUDA graph (``torch.cuda.graph``;
  AdamW ``capturable=True``, autocast cache off) and replayed, with the same statistics, or the
  reason the capture failed (``--no-eager``: only these rows);
then ratios of ours against the official VMamba figures measured on an H200 (OFFICIAL_H200, from
../shared/anchors/vmamba_official_vs_ours_h200.json) and against ``convnext_tiny`` in the same run
and mode (eager, graph or compiled),
and a profile of one training step of ``--profile`` (where the time goes): by CUDA kernel, by
module (forward) and by autograd node (backward), with its kernel time against the measured step.

``--tf32 on`` (default) lets both cuDNN convolutions and matmuls use TF32, ``off`` neither; official
VMamba's fp32 figures are quoted for the same setting (its 1x1 layers are cuDNN convolutions,
TF32 by default: its "on" figure equals its torch-default one). ``--norm-backend triton`` puts
every ``ssm_apps`` LayerNorm2d on the Triton kernel of ``ssm_apps.kernels.norm`` for this run
(``set_norm_backend``; output in the input's memory layout). Prints a table and writes benchmarks/results/vision_<gpu>_<tag>.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from pathlib import Path

import timm
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ssm_apps.vision  # noqa: E402, F401  (registers the models)
from benchmarks.timing import median_seconds, sync  # noqa: E402
from ssm_apps.layers import set_norm_backend  # noqa: E402
from ssm_apps.training.cuda_graphs import GraphedInference  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "local"  # untracked; --out FILE to keep a result
OURS = ["vmamba_tiny_s1l8", "vmamba_small_s2l15", "vmamba_base_s2l15",
        "efficientvmamba_tiny", "efficientvmamba_small", "efficientvmamba_base"]
BASELINES = ["convnext_tiny", "swin_tiny_patch4_window7_224", "resnet50"]
DEFAULT_MODELS = ["vmamba_tiny_s1l8", "vmamba_small_s2l15", "vmamba_base_s2l15", "convnext_tiny"]
REFERENCE_BASELINE = "convnext_tiny"
# Official VMamba (MzeroMiko/VMamba 2ed52ea, oflex CUDA scan + Triton cross-scan) on one H200, torch 2.11,
# batch 128, 224x224, img/s (../shared/anchors/vmamba_official_vs_ours_h200.json: models.rows and
# probes.infer_fp32). infer_fp32 by TF32 setting: "on" = cuDNN and matmul TF32 (probe tf32_all; the
# torch default, cuDNN only, gives the same within 1%), "off" = strict fp32 (probe strict_fp32).
OFFICIAL_H200 = {
    "vmamba_tiny_s1l8": {"infer_fp32": {"on": 3034.0, "off": 1624.0}, "infer_bf16": 3122.3, "train_bf16": 1163.0},
    "vmamba_small_s2l15": {"infer_fp32": {"on": 1594.5, "off": 898.3}, "infer_bf16": 1703.1, "train_bf16": 591.2},
    "vmamba_base_s2l15": {"infer_fp32": {"on": 1228.8, "off": 632.5}, "infer_bf16": 1343.5, "train_bf16": 463.8},
}


# ----------------------------------------------------------------------------- timing


def _stats(ms: list[float]) -> dict:
    s = sorted(ms)

    def pick(q: float) -> float:  # nearest-rank quantile
        return s[min(len(s) - 1, round(q * (len(s) - 1)))]

    med = pick(0.5)
    return {"median_ms": med, "p90_ms": pick(0.9), "p90_over_median": pick(0.9) / med, "min_ms": s[0],
            "max_ms": s[-1], "n": len(s)}


def step_statistics(step, steps: int, warmup: int, device: str, batch: int) -> dict:
    """Per-step CUDA-event, host-enqueue and wall times of ``steps`` synchronised steps, then the
    throughput of ``steps`` steps run back to back."""
    for _ in range(warmup):
        step()
    sync(device)
    event_ms, enqueue_ms, wall_ms = [], [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        step()
        if device == "cuda":
            end.record()
        enqueue_ms.append((time.perf_counter() - t0) * 1e3)
        if device == "cuda":
            end.synchronize()
            event_ms.append(start.elapsed_time(end))
        wall_ms.append((time.perf_counter() - t0) * 1e3)
        if device != "cuda":
            event_ms.append(wall_ms[-1])
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    pipelined = (time.perf_counter() - t0) / steps
    event = _stats(event_ms)
    return {"img_s": batch / (event["median_ms"] / 1e3), "event": event, "enqueue": _stats(enqueue_ms),
            "wall": _stats(wall_ms), "pipelined_ms": pipelined * 1e3, "pipelined_img_s": batch / pipelined,
            "event_ms": event_ms, "wall_ms": wall_ms}


# ----------------------------------------------------------------------------- model set-up


def set_backend(model: torch.nn.Module, backend: str | None) -> None:
    for m in model.modules():
        if hasattr(m, "scan_backend"):
            m.scan_backend = backend


def patch_norm_backend(model: torch.nn.Module, backend: str):
    """Put every ``LayerNorm2d`` of ``model`` on ``backend`` ("torch" or "triton"). Returns (how many
    modules are affected, a function putting them back on "torch")."""
    if backend != "triton":
        return 0, lambda: None
    return set_norm_backend(model, "triton"), lambda: set_norm_backend(model, "torch")


def make_train_step(model, module, batch: int, size: int, device: str, graph: bool):
    """A zero-argument training step (bf16 autocast forward, backward, AdamW); with ``graph`` the
    step is captured whole in a CUDA graph and the returned step replays it."""
    inputs = [torch.randn(batch, 3, size, size, device=device) for _ in range(2)]
    target = torch.randint(0, 1000, (batch,), device=device)
    flip = [0]

    def next_input() -> torch.Tensor:
        flip[0] ^= 1
        return inputs[flip[0]]

    amp = torch.bfloat16
    if not graph:
        opt = torch.optim.AdamW(module.parameters(), lr=1e-4)

        def step() -> None:
            with torch.autocast(device, dtype=amp):
                loss = torch.nn.functional.cross_entropy(model(next_input()), target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step._opt = opt
        return step
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, capturable=True)
    static_x = inputs[0].clone()

    def body() -> None:
        with torch.autocast(device, dtype=amp, cache_enabled=False):
            loss = torch.nn.functional.cross_entropy(model(static_x), target)
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (autotuning, cuDNN choices, lazy state) off the capture
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            body()
    torch.cuda.current_stream().wait_stream(side)
    opt.zero_grad(set_to_none=True)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        body()

    def replay() -> None:
        static_x.copy_(next_input())
        g.replay()

    replay._graph = g  # the graph (and its memory pool) and the optimizer whose state it updates
    replay._opt = opt  # live as long as the step
    return replay


def measure(name: str, args, norm: str, graph: bool = False, compile_model: bool = False) -> dict:
    """Inference img/s (fp32, bf16) and training step statistics of one model; ``graph``: inference and the
    training step replayed from CUDA graphs; ``compile_model``: through ``torch.compile`` (inductor; the
    scans stay opaque)."""
    device = args.device
    module = timm.create_model(name, num_classes=1000).to(device)
    set_backend(module, args.scan_backend)
    patched, undo = patch_norm_backend(module, norm)
    try:
        return _measure(name, args, module, norm, patched, graph, compile_model)
    finally:
        undo()


def _measure(name, args, module, norm, patched, graph, compile_model) -> dict:
    device = args.device
    if compile_model:
        # the scans are compiler-disabled calls, so every block's forward is a frame of its own that
        # dynamo compiles once per stage shape and grad mode: more than its default limit of 8; with
        # static shapes per stage (inductor failed on the automatically dynamic ones)
        torch._dynamo.config.recompile_limit = 64
        torch._dynamo.config.accumulated_recompile_limit = 1024
        torch._dynamo.config.automatic_dynamic_shapes = False
    model = torch.compile(module) if compile_model else module
    row = {"model": name, "norm_backend": norm, "cuda_graph": graph, "compiled": compile_model,
           "params": sum(p.numel() for p in module.parameters()), "patched_norms": patched}
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    module.eval()
    if not graph:
        with torch.no_grad():
            row["infer_fp32_img_s"] = args.batch / median_seconds(lambda: model(x), device, args.iters)
            with torch.autocast(device, dtype=torch.bfloat16):
                row["infer_bf16_img_s"] = args.batch / median_seconds(lambda: model(x), device, args.iters)
    else:
        for key, dtype in (("infer_fp32_img_s", None), ("infer_bf16_img_s", torch.bfloat16)):
            graphed = GraphedInference(model)
            amp = torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()
            try:
                with amp:
                    graphed(x)  # captures
                    row[key] = args.batch / median_seconds(lambda: graphed(x), device, args.iters)
            except Exception as e:  # noqa: BLE001 - the row says what stopped the capture
                row[key.replace("_img_s", "_graph_error")] = f"{type(e).__name__}: {e}"[:200]
            graphed = None
    x = None  # free the inference batch before training
    module.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step = make_train_step(model, module, args.batch, args.size, device, graph)
    stats = step_statistics(step, args.steps, args.warmup, device, args.batch)
    row["train_bf16_img_s"] = stats.pop("img_s")
    row["train_bf16"] = stats
    if device == "cuda":
        row["train_peak_mem_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    model = module = step = None  # free the model before the next one
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


# ----------------------------------------------------------------------------- profile

# Modules whose forward time is reported separately ("where the time goes, by module").
PROFILED_MODULES = ("PatchEmbedV1", "PatchEmbedV2", "SS2D", "ES2D", "Mlp", "ConvBranch", "BiAttn",
                    "InvertedResidual", "ConvDownsample", "PatchMerging2D", "ClassifierHead", "LayerNorm2d")
BACKWARD_PREFIX = "autograd::engine::evaluate_function: "


def _device_ms(evt) -> float:
    return (getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0)) / 1e3


def _with_module_ranges(model: torch.nn.Module) -> list:
    """Forward hooks opening/closing a profiler range "fwd::<class>" around each profiled module, and
    one around SS2D.scan (patterns + selective scan). Returns the handles (remove them when done)."""
    handles = []
    for m in model.modules():
        name = type(m).__name__
        if name not in PROFILED_MODULES:
            continue

        def pre(mod, args, _name=name):
            mod._bench_range = torch.autograd.profiler.record_function(f"fwd::{_name}")
            mod._bench_range.__enter__()

        def post(mod, args, out):
            mod._bench_range.__exit__(None, None, None)

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
        if hasattr(m, "scan") and not hasattr(m.scan, "_bench_wrapped"):
            scan = m.scan

            def ranged_scan(x, _scan=scan):
                with torch.autograd.profiler.record_function("fwd::SS2D.scan (patterns + selective scan)"):
                    return _scan(x)

            ranged_scan._bench_wrapped = True
            m.scan = ranged_scan
    return handles


def profile_training(name: str, args, norm: str, top: int = 15) -> dict:
    """One bf16 training step under the profiler: GPU time by CUDA kernel, by module (forward) and by
    autograd node (backward). Shares are of the step's total kernel time."""
    model = timm.create_model(name, num_classes=1000).cuda().train()
    set_backend(model, args.scan_backend)
    _, undo = patch_norm_backend(model, norm)
    try:
        return _profile(model, args, top)
    finally:
        undo()


def _profile(model, args, top: int) -> dict:
    step = make_train_step(model, model, args.batch, args.size, "cuda", graph=False)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile

    handles = _with_module_ranges(model)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    for h in handles:
        h.remove()
    kernels, modules, backward = [], {}, {}
    for evt in prof.key_averages():
        ms = _device_ms(evt)
        if ms <= 0:
            continue
        if str(evt.device_type).endswith("CUDA"):
            if not evt.key.startswith(("fwd::", BACKWARD_PREFIX)):
                kernels.append({"kernel": evt.key[:90], "ms": ms, "calls": evt.count})
        elif evt.key.startswith("fwd::"):
            modules[evt.key] = modules.get(evt.key, 0.0) + ms
        elif evt.key.startswith(BACKWARD_PREFIX):
            node = re.sub(r"\d+$", "", evt.key[len(BACKWARD_PREFIX):])
            backward[f"bwd::{node}"] = backward.get(f"bwd::{node}", 0.0) + ms
    total = sum(k["ms"] for k in kernels)

    def table(items: list[dict]) -> list[dict]:
        items.sort(key=lambda r: -r["ms"])
        for r in items:
            r["share"] = r["ms"] / total
        return items[:top]

    return {
        "step_kernel_ms": total,
        "kernels": table(kernels),
        "forward_by_module": table([{"kernel": k, "ms": v, "calls": 0} for k, v in modules.items()]),
        "backward_by_node": table([{"kernel": k, "ms": v, "calls": 0} for k, v in backward.items()]),
    }


# ----------------------------------------------------------------------------- report


def add_ratios(rows: list[dict], tf32: str) -> None:
    """Ratios (> 1: ours faster) against the official H200 figures and against convnext_tiny's row of the
    same mode (eager, CUDA graph or compiled)."""
    for r in rows:
        if "error" in r:
            continue
        base = next((b for b in rows if b["model"] == REFERENCE_BASELINE and "error" not in b
                     and b["cuda_graph"] == r["cuda_graph"] and b["compiled"] == r["compiled"]), None)
        off = OFFICIAL_H200.get(r["model"])
        if off:
            official = {"infer_fp32": off["infer_fp32"][tf32], "infer_bf16": off["infer_bf16"],
                        "train_bf16": off["train_bf16"]}
            r["vs_official"] = {k: r[f"{k}_img_s"] / v for k, v in official.items() if f"{k}_img_s" in r}
        if base and r is not base:
            r["vs_" + REFERENCE_BASELINE] = {k: r[f"{k}_img_s"] / base[f"{k}_img_s"]
                                             for k in ("infer_fp32", "infer_bf16", "train_bf16") if f"{k}_img_s" in r}


def _label(r: dict) -> str:
    return (r["model"] + (" +tln" if r.get("norm_backend") == "triton" else "")
            + (" (graph)" if r.get("cuda_graph") else "") + (" (compiled)" if r.get("compiled") else ""))


def print_table(rows: list[dict], header: str) -> None:
    print(f"\n{header}")
    print(f"{'model':30s} {'params':>11s} {'inf fp32':>9s} {'inf bf16':>9s} {'train':>7s} {'step med':>8s} "
          f"{'p90/med':>7s} {'enq med':>7s} {'wall med':>8s} {'pipe':>7s} {'x official f32/b16/trn':>23s} "
          f"{'x ' + REFERENCE_BASELINE + ' trn':>18s}")
    for r in rows:
        label = _label(r)
        if "error" in r:
            print(f"{label:30s} ERROR {r['error']}")
            continue
        t = r["train_bf16"]
        off = r.get("vs_official", {})
        off_s = "/".join(f"{off[k]:.2f}" if k in off else "-" for k in ("infer_fp32", "infer_bf16", "train_bf16"))
        base = r.get("vs_" + REFERENCE_BASELINE, {})
        base_s = f"{base['train_bf16']:.2f}" if base else ""
        print(f"{label:30s} {r['params']:11,d} {r.get('infer_fp32_img_s', float('nan')):9.0f} "
              f"{r.get('infer_bf16_img_s', float('nan')):9.0f} {r['train_bf16_img_s']:7.0f} "
              f"{t['event']['median_ms']:8.2f} {t['event']['p90_over_median']:7.3f} {t['enqueue']['median_ms']:7.2f} "
              f"{t['wall']['median_ms']:8.2f} {t['pipelined_img_s']:7.0f} {off_s:>23s} {base_s:>18s}")
    print("train = batch / median CUDA-event step time; step med / enq med / wall med: ms per step (GPU "
          "events; host time to enqueue; wall to the step's end); pipe: img/s of the steps back to back; "
          "+tln: LayerNorm2d on the Triton kernels")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=224, help="input height = width")
    p.add_argument("--iters", type=int, default=10, help="timed inference calls per setting")
    p.add_argument("--steps", type=int, default=50, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5, help="training steps before timing")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                   help=f"timm names, or 'all' ({', '.join(OURS + BASELINES)}); default {DEFAULT_MODELS}")
    p.add_argument("--scan-backend", default=None, help="force the selective-scan backend (default: best available)")
    p.add_argument("--norm-backend", nargs="+", choices=["torch", "triton"], default=["torch"],
                   help="LayerNorm2d: 'torch' (the model's permute + F.layer_norm), 'triton' (kernels.norm), "
                        "or both (each of our models measured with each, in this order)")
    p.add_argument("--tf32", choices=["on", "off"], default="on",
                   help="TF32 for cuDNN convolutions and matmuls (official VMamba's 1x1 convs: on)")
    p.add_argument("--cuda-graph", action="store_true", help="also time the training step captured in a CUDA graph")
    p.add_argument("--no-eager", action="store_true", help="leave out the eager rows (with --cuda-graph or --compile)")
    p.add_argument("--compile", action="store_true", help="also measure each model under torch.compile")
    p.add_argument("--profile", default="vmamba_tiny_s1l8", help="model to profile ('' for none)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: smoke run only")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/vision_<gpu>_<tag>.json)")
    args = p.parse_args()
    if args.models == ["all"]:
        args.models = OURS + BASELINES
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_vision_gpu.py: no CUDA device here; run it on a GPU, or smoke-test it with "
                         "--device cpu (tiny --batch/--size/--steps)")
    on = args.tf32 == "on"
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    rows = []
    variants = [] if args.no_eager and (args.cuda_graph or args.compile) else [(False, False)]
    if args.cuda_graph and args.device == "cuda":
        variants.append((True, False))
    if args.compile:
        variants.append((False, True))
    for name in args.models:
        # the baselines have no ssm_apps LayerNorm2d: measured once
        norms = args.norm_backend if name in OURS or name not in BASELINES else args.norm_backend[:1]
        for norm in norms:
            for graph, compile_model in variants:
                t0 = time.perf_counter()
                try:
                    rows.append(measure(name, args, norm, graph, compile_model))
                except Exception as exc:  # an ERROR row; measure the others, exit non-zero at the end
                    rows.append({"model": name, "norm_backend": norm, "cuda_graph": graph, "compiled": compile_model,
                                 "error": f"{type(exc).__name__}: {exc}"[:400]})
                    if args.device == "cuda":
                        torch.cuda.empty_cache()
                rows[-1]["wall_s"] = time.perf_counter() - t0
                print({k: v for k, v in rows[-1].items() if k != "train_bf16"}, flush=True)
    add_ratios(rows, args.tf32)
    profiles = {}
    for norm in args.norm_backend if args.profile and args.device == "cuda" else ():
        try:
            prof = profile_training(args.profile, args, norm)
        except Exception as exc:
            prof = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        measured = next((r for r in rows if r["model"] == args.profile and r.get("norm_backend") == norm
                         and "error" not in r and not r["cuda_graph"] and not r["compiled"]), None)
        if measured and "step_kernel_ms" in prof:
            step_ms = measured["train_bf16"]["event"]["median_ms"]
            prof["measured_step_ms"] = step_ms
            prof["kernel_share_of_step"] = prof["step_kernel_ms"] / step_ms
        profiles[f"{args.profile} norm {norm}"] = prof
    tag = "_".join([args.scan_backend or "auto", f"tf32{args.tf32}", "norm" + "+".join(args.norm_backend)]
                   + (["graph"] if args.cuda_graph else []) + (["compiled"] if args.compile else []))
    print_table(rows, f"{gpu}, torch {torch.__version__}, batch {args.batch}, {args.size}x{args.size}, scan backend "
                      f"{args.scan_backend or 'auto'}, norm backend {'/'.join(args.norm_backend)}, TF32 {args.tf32}, "
                      f"{args.steps} training steps; official = VMamba on an H200 (same TF32 setting)")
    for title, prof in profiles.items():
        if "error" in prof:
            print(f"profile {title} ERROR {prof['error']}")
            continue
        print(f"\nwhere a {title} training step spends GPU time ({prof['step_kernel_ms']:.1f} ms of kernels"
              + (f" in a {prof['measured_step_ms']:.1f} ms step: {prof['kernel_share_of_step']:.0%}"
                 if "measured_step_ms" in prof else "") + "):")
        for heading, key in (("top kernels", "kernels"), ("forward by module", "forward_by_module"),
                             ("backward by autograd node", "backward_by_node")):
            print(f" {heading}:")
            for r in prof[key]:
                calls = f"{r['calls']:5d}x" if r["calls"] else "      "
                print(f"  {r['share']:6.1%} {r['ms']:8.2f} ms {calls}  {r['kernel']}")
    slug = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"vision_{slug}_{tag}.json"
    out.write_text(json.dumps({
        "device": gpu, "torch": torch.__version__, "batch": args.batch, "size": args.size, "steps": args.steps,
        "warmup_steps": args.warmup, "scan_backend": args.scan_backend or "auto", "norm_backend": args.norm_backend,
        "tf32": args.tf32,
        "allow_tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "cudnn_benchmark": True, "rows": rows, "official_vmamba_h200": OFFICIAL_H200,
        "reference_baseline": REFERENCE_BASELINE, "profile": profiles}, indent=2))
    print(f"wrote {out}")
    # a CUDA-graph capture that fails is a finding (reported in its row), not a failed measurement
    failed = [_label(r) for r in rows if "error" in r and not r.get("cuda_graph")]
    if failed:
        raise SystemExit(f"bench_vision_gpu.py: {len(failed)} measurement(s) failed (see ERROR rows): {failed}")


if __name__ == "__main__":
    main()
