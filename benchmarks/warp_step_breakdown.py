"""Where a MuJoCo Warp vector env spends an env step: physics, resets, reward, termination and
observation, each timed between device synchronisations, for one family and world count.

    python benchmarks/warp_step_breakdown.py metarl/AntVel-v0 --num-envs 800 --steps 100
    python benchmarks/warp_step_breakdown.py metarl/AntVel-v0 --not-deterministic

The first reset compiles the kernels (minutes on a fresh machine, cached by Warp after) and the
first step captures the step's CUDA graph; neither is counted. Random actions in [-1, 1], so the
ants fall and many steps reset some world, as they do for a fresh policy. It measures; it tests
nothing. Needs the ``gpu`` extra; on a machine without a GPU it runs on Warp's CPU device.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any

import gymnasium as gym
import torch
from metarl_envs import WARP_ENTRY_POINTS

PARTS = ("_simulate", "_reset_ids", "_before_step", "_reward", "_terminated", "_observe")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env", choices=sorted(WARP_ENTRY_POINTS))
    parser.add_argument("--num-envs", type=int, default=800)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--not-deterministic", action="store_true", help="sampler.deterministic: false")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    creator = gym.envs.registration.load_env_creator(WARP_ENTRY_POINTS[args.env])
    env = creator(
        num_envs=args.num_envs,
        max_episode_steps=200,
        device=args.device,
        deterministic=not args.not_deterministic,
    )
    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def timed(name: str) -> Any:
        inner = getattr(env, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            sync()
            start = time.perf_counter()
            out = inner(*a, **k)
            sync()
            spent[name] += time.perf_counter() - start
            calls[name] += 1
            return out

        return wrapper

    for name in PARTS:
        setattr(env, name, timed(name))
    start = time.perf_counter()
    env.reset(seed=list(range(args.num_envs)))
    sync()
    print(f"first reset (compiles the kernels): {time.perf_counter() - start:.1f} s")
    gen = torch.Generator(device=args.device).manual_seed(0)
    act_dim = env.single_action_space.shape[0]
    actions = torch.rand(args.steps + 1, args.num_envs, act_dim, device=args.device, generator=gen) * 2 - 1
    env.step(actions[0])  # captures the step's graph
    spent.clear()
    calls.clear()
    sync()
    start = time.perf_counter()
    for t in range(args.steps):
        env.step(actions[t + 1])
    sync()
    total = time.perf_counter() - start
    rate = args.num_envs * args.steps / total
    print(
        f"{args.env}, {args.num_envs} worlds on {env.device}, deterministic={env.deterministic}: "
        f"{total / args.steps * 1e3:.2f} ms per env step, {rate:,.0f} env-steps/s"
    )
    for name in PARTS:
        if calls[name]:
            print(
                f"  {name.strip('_'):<12} {spent[name] / calls[name] * 1e3:8.2f} ms x {calls[name]:<4}"
                f"= {spent[name]:.2f} s"
            )
    env.close()


if __name__ == "__main__":
    main()
