"""Whether ``evaluate`` repeats itself to the bit, per number of the batched engine's threads.

    python benchmarks/evaluate_repeatability.py RUN [--threads 1,2] [--tasks 40] [--steps 2]
        [--set env_kwargs.KEY=VALUE ...]

For each thread count the run's checkpoint is loaded and scored twice in this process, with its
``sampler.num_threads`` set to that count (torch on one thread, so that only the engine's threads
change), and the table gives, per adaptation step, the largest difference between the two
per-task returns and how many tasks differ at all. A deterministic evaluation prints zeros.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from metarl.config import given_keys, parse_overrides
from metarl.learners.base import load


def per_task_returns(run: str, threads: int, tasks: int, steps: int, env_kwargs: dict) -> np.ndarray:
    """One evaluation's returns, [tasks, steps + 1], with the engine on ``threads`` threads."""
    learner = load(run)
    learner.config.sampler.num_threads = threads
    try:
        result = learner.evaluate(num_tasks=tasks, steps=steps, seed=0, env_kwargs=env_kwargs)
    finally:
        learner.close()
    return np.asarray(result["per_task_returns"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory or checkpoint (a baseline's too)")
    parser.add_argument("--threads", default="1,2", help="comma-separated engine thread counts")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="env_kwargs.KEY=VALUE")
    args = parser.parse_args()
    parsed = parse_overrides(args.set)
    if any(key != "env_kwargs" for key in given_keys(parsed)):
        parser.error("--set takes env_kwargs.KEY=VALUE only")
    torch.set_num_threads(1)
    print(f"{'threads':>7}  {'step':>4}  {'max |diff|':>10}  {'tasks differing':>15}")
    for threads in (int(t) for t in args.threads.split(",")):
        first, second = (
            per_task_returns(args.run, threads, args.tasks, args.steps, parsed.get("env_kwargs", {}))
            for _ in range(2)
        )
        for k in range(args.steps + 1):
            differ = int((first[:, k] != second[:, k]).sum())
            print(f"{threads:>7}  {k:>4}  {np.abs(first[:, k] - second[:, k]).max():>10.4g}  {differ:>15}")


if __name__ == "__main__":
    main()
