"""How an ant's episodes end under a Gaussian policy of a given std, per control period.

    python benchmarks/ant_termination.py [--env metarl/AntDir-v0] [--frame-skips 5,2]
        [--stds 1,0.5,0.3] [--episodes 40] [--horizon 200]

An ant episode ends when the torso's height leaves [0.2, 1]. Each episode here acts with
zero-mean Gaussian actions of std ``s`` (clipped to [-1, 1], as a fresh policy with
``init_log_std = log s`` and a centred mean head acts), and the table gives the mean episode
length and how many episodes ended with the torso above 1 (jumped) or below 0.2 (fell), for
each ``frame_skip`` (Gymnasium's Ant-v5: 5, 0.05 s per action; the MAML paper's rllab ant: 0.02 s
per action, ``frame_skip=2`` here). ``--physics rllab`` adds rows with the rllab ant's own
integration and start, as the MAML authors' code ran it: one RK4 step of 0.02 s per action, from
its standing pose (torso at 0.55 m, ankles at ±1 rad, inside their limits; Gymnasium's ant starts
at 0.75 m with every joint at 0, the ankles outside their [30°, 70°] range) with Gaussian noise of std
0.01 on the positions and 0.1 on the velocities. Everything runs on the single env, one episode
at a time.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

import metarl  # noqa: F401  (registers the families)

# rllab's ant.xml: init_qpos (free joint, then hip/ankle pairs of the four legs)
RLLAB_QPOS = np.array([0, 0, 0.55, 1, 0, 0, 0, 0, 1, 0, -1, 0, -1, 0, 1], dtype=float)


PHYSICS = ("gymnasium", "rllab")


def episode_ends(
    env_id: str, frame_skip: int, std: float, episodes: int, horizon: int, physics: str = "gymnasium"
) -> dict[str, Any]:
    """How ``episodes`` episodes of clipped N(0, std²) actions end: their mean length and how many
    jumped or fell, with ``frame_skip`` steps of Gymnasium's physics per action, or with
    ``physics="rllab"`` (which ignores ``frame_skip``)."""
    if physics not in PHYSICS:
        raise ValueError(f"physics: got {physics!r}, expected one of {PHYSICS}")
    rllab = physics == "rllab"
    env = gym.make(env_id, frame_skip=1 if rllab else frame_skip)
    inner = env.unwrapped
    if rllab:
        inner.model.opt.timestep = 0.02
        inner.model.opt.integrator = mujoco.mjtIntegrator.mjINT_RK4
    low, high = inner._healthy_z_range
    rng = np.random.default_rng(0)
    act_dim = env.action_space.shape[0]
    lengths, jumped, fell = [], 0, 0
    for k in range(episodes):
        env.reset(seed=k)
        if rllab:
            start = np.random.default_rng(k)
            qpos = RLLAB_QPOS + 0.01 * start.standard_normal(inner.model.nq)
            inner.set_state(qpos, 0.1 * start.standard_normal(inner.model.nv))
        steps = 0
        while steps < horizon:
            action = np.clip(std * rng.standard_normal(act_dim), -1.0, 1.0)
            _, _, terminated, _, _ = env.step(action)
            steps += 1
            if terminated:
                z = float(inner.data.qpos[2])
                jumped += z > high
                fell += z < low
                break
        lengths.append(steps)
    env.close()
    return {
        "physics": physics,
        "frame_skip": 1 if rllab else frame_skip,
        "seconds_per_action": float(inner.dt),
        "std": std,
        "mean_length": float(np.mean(lengths)),
        "jumped": int(jumped),
        "fell": int(fell),
        "episodes": episodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="metarl/AntDir-v0")
    parser.add_argument("--frame-skips", default="5,2")
    parser.add_argument("--stds", default="1,0.5,0.3")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--physics", default="gymnasium", help="gymnasium, rllab or both: gymnasium,rllab")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    physics = args.physics.split(",")
    if not set(physics) <= {"gymnasium", "rllab"}:
        parser.error(f"--physics: got {args.physics!r}, expected gymnasium, rllab or gymnasium,rllab")
    rows = [
        episode_ends(args.env, int(fs), float(std), args.episodes, args.horizon, "gymnasium")
        for fs in args.frame_skips.split(",")
        for std in args.stds.split(",")
        if "gymnasium" in physics
    ]
    if "rllab" in physics:
        rows += [
            episode_ends(args.env, 1, float(std), args.episodes, args.horizon, "rllab")
            for std in args.stds.split(",")
        ]
    print(f"{args.env}, {args.episodes} episodes of at most {args.horizon} steps per row")
    names = ("physics", "frame_skip", "s/action", "std", "mean length", "jumped", "fell")
    print("  ".join(f"{n:>{w}}" for n, w in zip(names, (9, 10, 8, 4, 11, 6, 4), strict=True)))
    for r in rows:
        print(
            f"{r['physics']:>9}  {r['frame_skip']:>10}  {r['seconds_per_action']:>8.2f}  {r['std']:>4g}  "
            f"{r['mean_length']:>11.1f}  {r['jumped']:>6}  {r['fell']:>4}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
