"""Why a family's physics does or does not scale over the cores: ``Batch.step`` alone, on recorded
states, for several thread counts, with a persistent batch (one MjData per simulation) or not
(state copied in and out of per-thread MjData every call), and how unevenly the simulations cost.

    python benchmarks/physics_scaling.py metarl/AntVel-v0 --num-envs 800 --threads 1,2,4,8,16

Prints env-steps/s per thread count and mode, the speed-up over one thread, and the spread of
single-simulation step times (a large spread makes a static split of simulations over threads
uneven). It measures; it tests nothing.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import mujoco
import numpy as np
from mujoco.batch import Batch

import metarl  # noqa: F401  (registers the families)

FIELDS = ("qpos", "qvel", "act", "qacc_warmstart")


def record_states(env_id: str, num_envs: int, steps: int, seed: int) -> tuple[gym.Env, list[dict]]:
    """The states (and controls) of ``num_envs`` sub-envs over ``steps`` random-action steps."""
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", num_threads=1)
    base = env.unwrapped
    base.set_tasks(base.sample_tasks(num_envs, np.random.default_rng(seed)))
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    fields = {f: base.batch.bind(f) for f in FIELDS if base.batch.bind(f).shape[1] > 0}
    states = []
    for _ in range(steps):
        actions = rng.uniform(-1, 1, size=(num_envs, env.single_action_space.shape[0]))
        state = {f: arr.copy() for f, arr in fields.items()}
        state["ctrl"] = actions
        states.append(state)
        env.step(actions)
    return env, states


def replay(
    model: mujoco.MjModel, frame_skip: int, states: list[dict], nthread: int, persistent: bool
) -> float:
    """Env-steps/s of ``Batch.step`` replaying ``states`` on ``nthread`` threads (best of 3)."""
    num_envs = len(states[0]["qpos"])
    batch = Batch(model, num_envs, nthread=nthread, persistent=persistent)
    fields = {f: batch.bind(f) for f in (*FIELDS, "ctrl") if f in states[0]}
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for state in states:
            for f, arr in fields.items():
                arr[:] = state[f]
            batch.step(nstep=frame_skip)
        best = max(best, num_envs * len(states) / (time.perf_counter() - start))
    return best


def per_simulation_cost(
    model: mujoco.MjModel, frame_skip: int, states: list[dict], sample: int = 64
) -> np.ndarray:
    """Seconds of one env step (``frame_skip`` × ``mj_step``) per sampled simulation, averaged
    over the recorded steps, on one thread."""
    data = mujoco.MjData(model)
    num_envs = len(states[0]["qpos"])
    ids = np.unique(np.linspace(0, num_envs - 1, min(sample, num_envs)).astype(int))
    cost = np.zeros(len(ids))
    for state in states:
        for j, i in enumerate(ids):
            for f in (*FIELDS, "ctrl"):
                if f in state:
                    getattr(data, f)[:] = state[f][i]
            start = time.perf_counter()
            mujoco.mj_step(model, data, nstep=frame_skip)
            cost[j] += time.perf_counter() - start
    return cost / len(states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id", nargs="?", default="metarl/AntVel-v0")
    parser.add_argument("--num-envs", type=int, default=800)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env, states = record_states(args.env_id, args.num_envs, args.steps, args.seed)
    base = env.unwrapped
    model, frame_skip = base.reference.model, base.frame_skip
    print(f"{args.env_id}: {args.num_envs} simulations, {args.steps} recorded steps, frame skip {frame_skip}")
    cost = per_simulation_cost(model, frame_skip, states)
    print(
        f"one env step on one thread: mean {cost.mean() * 1e6:.1f} us, min {cost.min() * 1e6:.1f}, "
        f"max {cost.max() * 1e6:.1f} (max/mean {cost.max() / cost.mean():.2f})"
    )
    counts = [int(x) for x in args.threads.split(",")]
    for persistent in (False, True):
        first = None
        for k in counts:
            rate = replay(model, frame_skip, states, k, persistent)
            first = first or rate
            print(
                f"persistent={persistent!s:<5} {k:>3} thread(s): {rate:>12,.0f} env-steps/s   "
                f"x{rate / first:.2f} over {counts[0]} thread(s)   "
                f"{rate * cost.mean() / k:.2f} of k / (one env step on one thread)"
            )
    env.close()


if __name__ == "__main__":
    main()
