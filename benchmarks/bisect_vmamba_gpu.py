"""Bisect a VMamba-T bf16 inference slow-down over source trees (``vmamba_tree_throughput.py`` per tree).

``TREES`` holds ``<name>.tar.gz`` archives of ``ssm_apps/`` (``git archive --format=tar.gz <commit> ssm_apps``)
and ``order.txt`` (names oldest first). The last tree and the start tree (``--start``) are measured with a
kernel profile, the threshold is their midpoint, and trees in between are bisected on bf16 inference img/s
until adjacent or ``--budget`` seconds; trees that fail to import are skipped. Writes JSON after every tree.

    python benchmarks/bisect_vmamba_gpu.py .device/trees --start 41a5733 --budget 200 --out $OUT/bisect.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).with_name("vmamba_tree_throughput.py")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trees", type=Path)
    p.add_argument("--start", default=None, help="the known-good tree to start from (default: the first)")
    p.add_argument("--budget", type=float, default=240.0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/bisect_vmamba.json"))
    args = p.parse_args()
    order = (args.trees / "order.txt").read_text().split()
    results: dict = {}
    work = Path(tempfile.mkdtemp(prefix="bisect_trees_"))  # the unpacked trees
    t0 = time.time()

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"order": order, "results": results}, indent=1))

    def run(name: str, *flags: str) -> float:
        tree = work / name
        if not tree.exists():
            tree.mkdir(parents=True)
            with tarfile.open(args.trees / f"{name}.tar.gz") as tar:
                tar.extractall(tree, filter="data")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]))
        start = time.time()
        proc = subprocess.run([sys.executable, str(SCRIPT), *flags], env=env, capture_output=True, text=True,
                              timeout=200)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        row = json.loads(lines[0][7:]) if lines else {"error": proc.stderr[-1500:]}
        row["wall_s"] = round(time.time() - start, 1)
        results[name + "".join(flags)] = row
        print(name, *flags, json.dumps(row)[:600], flush=True)
        save()
        return row.get("infer_bf16_img_s", 0.0)

    good = order.index(args.start) if args.start else 0
    bad = len(order) - 1
    slow = run(order[bad], "--profile")
    run(order[bad], "--profile", "--tln")
    fast = run(order[good], "--profile")
    threshold = (fast + slow) / 2
    broken: set[int] = set()
    while bad - good > 1 and time.time() - t0 < args.budget:
        candidates = [i for i in range(good + 1, bad) if i not in broken]
        if not candidates:
            break
        mid = min(candidates, key=lambda i: abs(i - (good + bad) / 2))
        value = run(order[mid])
        if "error" in results[order[mid]]:
            broken.add(mid)
        elif value >= threshold:
            good = mid
        else:
            bad = mid
    results["verdict"] = {"last_good": order[good], "first_bad": order[bad], "adjacent": bad - good == 1,
                          "threshold": threshold}
    save()
    print("VERDICT", results["verdict"])


if __name__ == "__main__":
    main()
