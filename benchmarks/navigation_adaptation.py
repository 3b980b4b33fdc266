"""Where a navigation policy ends up after K adaptation steps: the direction or the distance?

    python benchmarks/navigation_adaptation.py RUN_OR_CHECKPOINT [--steps 1,2] [--tasks 40] [--seed 0]

Adapts the policy to the held-out goals exactly as ``metarl evaluate`` does (same task stream,
same episodes, later steps at half the step size), then rolls every adapted policy out once more
with its mean action, so that the end point is the policy's own and not its noise's. Reported
per K: the return with sampled and with mean actions, the mean distance to the goal over time,
and the end point's error split along the goal's direction (from the start, (0, 0)) and across
it. ``slope`` is the least-squares slope of the end point's distance from the start against the
goal's: 1 when the policy stops at the goal whatever its distance, 0 when it walks a fixed
distance in the right direction.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from metarl_envs.navigation import MAX_SPEED

from metarl.evaluation import adapt_to_tasks, check_adaptation, load_policy
from metarl.learners.base import EVAL_STREAM
from metarl.sampling.local import Sampler, draw_randomness


def end_points(path: str, steps: list[int], num_tasks: int, seed: int, which: str) -> list[dict]:
    config, policy = load_policy(path, which)
    if policy is None or config.env != "metarl/Navigation2D-v0":
        raise SystemExit(f"{path!r} is not a navigation policy (env {config.env})")
    lr, later_lr = check_adaptation(config, max(steps), None, None, None)
    sampler = Sampler(
        config.env,
        num_tasks,
        config.episodes_per_task,
        config.horizon,
        num_threads=1,
        rescale_actions=config.policy.rescale_actions,
    )
    rows = []
    try:
        for k in steps:
            # The stream of `metarl evaluate --seed SEED`: its tasks, then its episodes.
            rng = np.random.default_rng([seed, EVAL_STREAM])
            generator = torch.Generator().manual_seed(seed)
            tasks = sampler.sample_tasks(num_tasks, rng)
            _, params = adapt_to_tasks(
                policy, config, sampler, tasks, k, lr, later_lr, rng, generator,
                torch.device("cpu"), score_last=False,
            )  # fmt: skip
            reset_seeds, noise = draw_randomness(
                policy, num_tasks, config.episodes_per_task, config.horizon, rng, generator
            )
            sampled = sampler.run(policy, params, k > 0, reset_seeds, noise)
            mean = sampler.run(policy, params, k > 0, reset_seeds, torch.zeros_like(noise))
            goals = np.array([t.goal for t in tasks], dtype=float)
            distance = -(mean.rewards[:, :, 0]).numpy()  # [T, tasks]; the start is the same for all
            alive = mean.mask[:, :, 0].numpy() > 0
            last = alive.sum(0) - 1
            # obs is the position before a move; the end point is after the last one.
            before = mean.obs[last, np.arange(num_tasks), 0].numpy().astype(np.float64)
            move = sampler.env_actions(mean.actions[last, np.arange(num_tasks), 0].numpy())
            end = before + np.clip(move, -MAX_SPEED, MAX_SPEED)
            radius = np.linalg.norm(goals, axis=1)
            unit = goals / radius[:, None]
            err = end - goals
            along = (err * unit).sum(1)
            across = err[:, 0] * unit[:, 1] - err[:, 1] * unit[:, 0]
            reached = np.linalg.norm(end, axis=1)
            slope = float(np.polyfit(radius, reached, 1)[0])
            times = [t for t in (0, 2, 5, 10, 20, 50, config.horizon - 1) if t < config.horizon]
            mean_distance = {t: float(distance[t][alive[t]].mean()) if alive[t].any() else 0.0 for t in times}
            rows.append(
                {
                    "steps": k,
                    "return_sampled": float(sampled.returns_per_task().mean()),
                    "return_mean_action": float(mean.returns_per_task().mean()),
                    "mean_distance_at": mean_distance,
                    "end_error_along_mean": float(along.mean()),
                    "end_error_along_rms": float(np.sqrt((along**2).mean())),
                    "end_error_across_rms": float(np.sqrt((across**2).mean())),
                    "corr_goal_distance_along_error": float(np.corrcoef(radius, along)[0, 1]),
                    "slope": slope,
                }
            )
    finally:
        sampler.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory or checkpoint of a Navigation2D policy")
    parser.add_argument("--steps", default="0,1,2", help="adaptation steps to look at, e.g. 1,2")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="held-out task seed (evaluate's --seed)")
    parser.add_argument("--checkpoint", choices=("latest", "best"), default="latest")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = [int(s) for s in args.steps.split(",")]
    rows = end_points(args.run, steps, args.tasks, args.seed, args.checkpoint)
    for r in rows:
        d = ", ".join(f"t={t}: {v:.3f}" for t, v in r["mean_distance_at"].items())
        print(
            f"{r['steps']} step(s): return {r['return_sampled']:.2f} sampled, "
            f"{r['return_mean_action']:.2f} with the mean action\n"
            f"  mean distance to the goal (mean action) {d}\n"
            f"  end point's error along the goal's direction: mean {r['end_error_along_mean']:+.3f}, "
            f"rms {r['end_error_along_rms']:.3f}; across it: rms {r['end_error_across_rms']:.3f}\n"
            f"  corr(goal distance, error along) {r['corr_goal_distance_along_error']:+.2f}; "
            f"slope of the end point's distance on the goal's {r['slope']:.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
