"""Env-steps/s of the Ray sampler against the local one, at the paper's cheetah size.

    python benchmarks/ray_scaling.py [--tasks 40] [--episodes 20] [--horizon 200] [--workers 1,2]
                                     [--address HEAD_IP:6379]

Each figure is the best of --rounds sampling calls (after one warm-up call) with the same policy.
The local sampler steps all envs in one batched engine on all cores; each Ray worker holds a
batched engine for its shard of the tasks, on --worker-threads threads.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ray
import torch

from metarl.policies import GaussianMLPPolicy
from metarl.sampling.local import Sampler
from metarl.sampling.ray import RaySampler


def rate(sampler, policy, rounds: int) -> float:
    tasks = sampler.sample_tasks(sampler.num_tasks, np.random.default_rng(0))
    sampler.set_tasks(tasks)
    best = 0.0
    for r in range(rounds + 1):
        start = time.perf_counter()
        eps = sampler.sample(
            policy, policy.params(), np.random.default_rng(r), torch.Generator().manual_seed(r)
        )
        elapsed = time.perf_counter() - start
        if r:  # the first call warms up
            best = max(best, eps.num_steps / elapsed)
    return best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="metarl/HalfCheetahVel-v0")
    p.add_argument("--tasks", type=int, default=40)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--horizon", type=int, default=200)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--worker-threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    a = p.parse_args()
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(17, 6, (100, 100))
    local = Sampler(a.env, a.tasks, a.episodes, a.horizon)
    base = rate(local, policy, a.rounds)
    local.close()
    print(f"{a.env}: {a.tasks} tasks x {a.episodes} episodes x {a.horizon} steps, best of {a.rounds}")
    print(f"local batched engine         {base:10,.0f} env-steps/s")
    ray.init(address=a.address, include_dashboard=False, log_to_driver=False)
    for w in [int(x) for x in a.workers.split(",")]:
        s = RaySampler(a.env, a.tasks, a.episodes, a.horizon, num_workers=w, num_threads=a.worker_threads)
        r = rate(s, policy, a.rounds)
        s.close()
        name = f"ray, {w} worker(s) x {a.worker_threads} thread(s)"
        print(f"{name:<29}{r:10,.0f} env-steps/s  ({r / base:.2f} of local)")
    ray.shutdown()


if __name__ == "__main__":
    main()
