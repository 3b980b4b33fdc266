"""Meta-iterations per hour when several trainings share one machine.

    python benchmarks/concurrent_runs.py --config experiments/ant_vel.yaml --device cuda \\
        [--copies 1,2,3] [--iterations 5] [--set KEY=VALUE ...] [--json FILE]

For each K in --copies, K copies of the config's training loop (seeds 0 … K-1) run at once, each
in its own process. Every copy first runs one untimed iteration (kernels compiled, CUDA graphs
captured), and none is timed until all have, so the timed iterations overlap. Reported per K: each
copy's median seconds per iteration, the iterations per hour of all copies together, and that
rate over one copy's alone, all from this one run.

On a GPU, start CUDA's Multi-Process Service first (``nvidia-cuda-mps-control -d``) to let the
copies' kernels run side by side; without it they take turns on the GPU. On the CPU, give each
copy its share of the cores (``--set num_threads=1 --set sampler.num_threads=1``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import statistics
import sys
import time
from typing import Any


def _copy(
    config_path: str, overrides: list[str], seed: int, iterations: int, barrier: Any, results: Any
) -> None:
    """One training loop: warm up, wait for the other copies, then time ``iterations``."""
    try:
        import torch

        from metarl.config import load_config
        from metarl.trainer import learner_from_config

        config = load_config(config_path, [*overrides, f"seed={seed}", "iterations=1"])
        with learner_from_config(config) as algo:
            algo.train_iteration(algo.rng, algo.generator)
            barrier.wait()
            times = []
            for _ in range(iterations):
                start = time.perf_counter()
                algo.train_iteration(algo.rng, algo.generator)
                times.append(time.perf_counter() - start)
            results.put({"seed": seed, "seconds": times, "torch_threads": torch.get_num_threads()})
    except BaseException as exc:  # the parent reports it; the other copies stop waiting
        barrier.abort()
        results.put({"seed": seed, "error": f"{type(exc).__name__}: {exc}"})


def measure(config_path: str, overrides: list[str], copies: int, iterations: int) -> dict[str, Any]:
    """Seconds per iteration of ``copies`` concurrent copies of one config's training loop."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    barrier, results = ctx.Barrier(copies), ctx.Queue()
    procs = [
        ctx.Process(target=_copy, args=(config_path, overrides, seed, iterations, barrier, results))
        for seed in range(copies)
    ]
    for p in procs:
        p.start()
    out: list[dict[str, Any]] = []
    while len(out) < copies:
        try:
            out.append(results.get(timeout=5))
        except queue.Empty:  # a copy killed from outside (out of memory, a signal) posts nothing
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    p.terminate()
                raise RuntimeError(f"a copy's process ended with exit code {dead[0]}") from None
    for p in procs:
        p.join()
    errors = [r["error"] for r in out if "error" in r]
    real = [e for e in errors if not e.startswith("BrokenBarrierError")]
    if errors:
        raise RuntimeError((real or errors)[0])
    out.sort(key=lambda r: r["seed"])
    medians = [statistics.median(r["seconds"]) for r in out]
    return {
        "copies": copies,
        "median_seconds_per_iteration": medians,
        "iterations_per_hour": sum(3600.0 / m for m in medians),
        "torch_threads": [r["torch_threads"] for r in out],
        "seconds": [r["seconds"] for r in out],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--copies", default="1,2", help="comma-separated numbers of concurrent copies")
    p.add_argument("--iterations", type=int, default=5, help="timed iterations per copy")
    p.add_argument("--device", help="where each copy's learner runs (default: the config's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    try:
        counts = [int(x) for x in a.copies.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        print(f"concurrent_runs: --copies must be positive whole numbers, got {a.copies!r}", file=sys.stderr)
        return 2
    if a.iterations < 1:
        print(f"concurrent_runs: --iterations must be >= 1, got {a.iterations}", file=sys.stderr)
        return 2
    overrides = [*a.set, *([f"device={a.device}"] if a.device else [])]
    rows = []
    for k in counts:
        try:
            rows.append(measure(a.config, overrides, k, a.iterations))
        except RuntimeError as exc:
            print(f"concurrent_runs: a copy failed: {exc}", file=sys.stderr)
            return 2
    alone = next((r["iterations_per_hour"] for r in rows if r["copies"] == 1), None)
    print(
        f"{a.config}: {a.iterations} timed iterations per copy after one warm-up each ({' '.join(overrides)})"
    )
    print("copies  median s/iteration per copy      iterations/h (all copies)  vs one copy")
    for r in rows:
        ratio = f"{r['iterations_per_hour'] / alone:.2f}x" if alone else "-"
        each = ", ".join(f"{m:.2f}" for m in r["median_seconds_per_iteration"])
        print(f"{r['copies']:>6}  {each:<32}  {r['iterations_per_hour']:>25,.0f}  {ratio:>11}")
        r["vs_one_copy"] = r["iterations_per_hour"] / alone if alone else None
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": a.config, "overrides": overrides, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
