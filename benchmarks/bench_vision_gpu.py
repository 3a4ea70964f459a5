"""GPU throughput of the vision backbones against timm baselines, in one run.

    python benchmarks/bench_vision_gpu.py [--batch 128] [--models ...] [--scan-backend triton|torch]

Per model, batch 128 at 224x224, random inputs (fresh per timed call set):
- inference img/s: eval mode, no_grad, fp32 and bf16 autocast;
- training img/s: bf16 autocast forward + backward + AdamW step;
then a profile of one VMamba-T training step (where the time goes): by CUDA kernel, by module
(forward) and by autograd node (backward).
Prints a table and writes benchmarks/results/vision_<gpu>.json. Needs a CUDA device.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import timm
import torch

import ssm_apps.vision  # noqa: F401  (registers the models)

RESULTS = Path(__file__).resolve().parent / "results" / "local"  # untracked; --out FILE to keep a result
OURS = ["vmamba_tiny_s1l8", "vmamba_small_s2l15", "vmamba_base_s2l15",
        "efficientvmamba_tiny", "efficientvmamba_small", "efficientvmamba_base"]
BASELINES = ["convnext_tiny", "swin_tiny_patch4_window7_224", "resnet50"]
# Official VMamba (its oflex CUDA scan + Triton cross-scan) on an H100, torch 2.11, batch 128 (the figures).
OFFICIAL = {"vmamba_tiny_s1l8": (1168, 1066), "vmamba_small_s2l15": (427, 536), "vmamba_base_s2l15": (321, 419)}


def timed(fn, iters: int) -> float:
    """Median seconds per call over ``iters`` calls (CUDA events), after 3 warm-up calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def set_backend(model: torch.nn.Module, backend: str | None) -> None:
    for m in model.modules():
        if hasattr(m, "scan_backend"):
            m.scan_backend = backend


def measure(name: str, batch: int, iters: int, backend: str | None, compile_model: bool = False) -> dict:
    """img/s of one model: eval fp32 and bf16-autocast inference, bf16 AMP training (AdamW step).
    ``compile_model``: run the model through ``torch.compile`` (inductor; the scans stay opaque)."""
    module = timm.create_model(name, num_classes=1000).cuda()
    set_backend(module, backend)
    if compile_model:
        # the scans are compiler-disabled calls, so every block's forward is a frame of its own that
        # dynamo compiles once per stage shape and grad mode: more than its default limit of 8; with
        # static shapes per stage (inductor failed on the automatically dynamic ones)
        torch._dynamo.config.recompile_limit = 64
        torch._dynamo.config.accumulated_recompile_limit = 1024
        torch._dynamo.config.automatic_dynamic_shapes = False
    model = torch.compile(module) if compile_model else module
    inputs = [torch.randn(batch, 3, 224, 224, device="cuda") for _ in range(2)]
    flip = [0]

    def next_input() -> torch.Tensor:
        flip[0] ^= 1
        return inputs[flip[0]]

    module.eval()
    with torch.no_grad():
        t32 = timed(lambda: model(next_input()), iters)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            t16 = timed(lambda: model(next_input()), iters)
    module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    target = torch.randint(0, 1000, (batch,), device="cuda")

    def train_step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(next_input()), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ttrain = timed(train_step, iters)
    params = sum(p.numel() for p in module.parameters())
    del model, module, opt
    torch.cuda.empty_cache()
    return {"model": name, "compiled": compile_model, "params": params, "infer_fp32_img_s": batch / t32, "infer_bf16_img_s": batch / t16,
            "train_bf16_img_s": batch / ttrain}


# Modules whose forward time is reported separately ("where the time goes, by module").
PROFILED_MODULES = ("PatchEmbedV1", "PatchEmbedV2", "SS2D", "ES2D", "Mlp", "ConvBranch", "BiAttn",
                    "InvertedResidual", "ConvDownsample", "PatchMerging2D", "ClassifierHead")
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


def profile_training(name: str, batch: int, backend: str | None, top: int = 15) -> dict[str, list[dict]]:
    """One bf16 training step under the profiler: GPU time by CUDA kernel, by module (forward) and by
    autograd node (backward). Shares are of the step's total kernel time."""
    model = timm.create_model(name, num_classes=1000).cuda().train()
    set_backend(model, backend)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    y = torch.randint(0, 1000, (batch,), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--models", nargs="+", default=OURS + BASELINES)
    p.add_argument("--scan-backend", default=None, help="force the selective-scan backend (default: best available)")
    p.add_argument("--profile", default="vmamba_tiny_s1l8", help="model to profile ('' for none)")
    p.add_argument("--compile", action="store_true", help="also measure each model under torch.compile")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/vision_<gpu>_<backend>.json)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_vision_gpu.py needs a CUDA device")
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name()
    rows = []
    for name in args.models:
        try:
            rows.append(measure(name, args.batch, args.iters, args.scan_backend))
        except Exception as exc:  # an ERROR row; measure the others, exit non-zero at the end
            rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
        print(rows[-1], flush=True)
        if args.compile:
            try:
                rows.append(measure(name, args.batch, args.iters, args.scan_backend, compile_model=True))
            except Exception as exc:
                rows.append({"model": name, "compiled": True, "error": f"{type(exc).__name__}: {exc}"[:300]})
            print(rows[-1], flush=True)
    prof = profile_training(args.profile, args.batch, args.scan_backend) if args.profile else []
    print(f"\n{gpu}, torch {torch.__version__}, batch {args.batch}, 224x224, scan backend {args.scan_backend or 'auto'}")
    print(f"{'model':32s} {'params':>11s} {'inf fp32':>9s} {'inf bf16':>9s} {'train':>9s} {'official inf/train':>19s}")
    for r in rows:
        label = r["model"] + (" (compiled)" if r.get("compiled") else "")
        if "error" in r:
            print(f"{label:32s} ERROR {r['error']}")
            continue
        off = OFFICIAL.get(r["model"])
        ref = f"{off[0]}/{off[1]} ({r['infer_fp32_img_s'] / off[0]:.2f}x/{r['train_bf16_img_s'] / off[1]:.2f}x)" if off else ""
        print(f"{label:32s} {r['params']:11,d} {r['infer_fp32_img_s']:9.0f} {r['infer_bf16_img_s']:9.0f} "
              f"{r['train_bf16_img_s']:9.0f} {ref:>19s}")
    if prof:
        print(f"\nwhere a {args.profile} training step spends GPU time ({prof['step_kernel_ms']:.1f} ms of kernels):")
        for title, key in (("top kernels", "kernels"), ("forward by module", "forward_by_module"),
                           ("backward by autograd node", "backward_by_node")):
            print(f" {title}:")
            for r in prof[key]:
                calls = f"{r['calls']:5d}x" if r["calls"] else "      "
                print(f"  {r['share']:6.1%} {r['ms']:8.2f} ms {calls}  {r['kernel']}")
    slug = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"vision_{slug}_{args.scan_backend or 'auto'}.json"
    out.write_text(json.dumps({"device": gpu, "torch": torch.__version__, "batch": args.batch,
                               "scan_backend": args.scan_backend or "auto", "rows": rows,
                               "official_vmamba_h100": OFFICIAL, "profile": {args.profile: prof}}, indent=2))
    print(f"wrote {out}")
    failed = [r["model"] + (" (compiled)" if r.get("compiled") else "") for r in rows if "error" in r]
    if failed:
        raise SystemExit(f"bench_vision_gpu.py: {len(failed)} measurement(s) failed (see ERROR rows): {failed}")


if __name__ == "__main__":
    main()
