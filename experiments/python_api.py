"""Train, adapt and evaluate a meta-policy from Python (the API the CLI runs on).

    python experiments/python_api.py                       # 2D navigation, 100 iterations
    python experiments/python_api.py --iterations 2 --meta-batch-size 3 --episodes 2

It trains MAML-TRPO on 2D navigation into a run directory (TensorBoard curves and checkpoints),
reloads it, adapts to one new task with one policy-gradient step, acts with the adapted policy,
and scores the learner on held-out tasks after 0-2 steps.
"""

from __future__ import annotations

import argparse

import numpy as np

import metarl


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--meta-batch-size", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task and step")
    parser.add_argument("--out", default="runs/python_api")
    args = parser.parse_args(argv)

    learner = metarl.MAMLTRPO(
        "metarl/Navigation2D-v0",
        meta_batch_size=args.meta_batch_size,
        episodes_per_task=args.episodes,
        inner_lr=0.1,
        max_kl=0.01,
        device="auto",
        seed=0,
    )

    def report(learner: metarl.Learner, metrics: dict[str, float]) -> bool:
        if learner.iteration % 10 == 0:
            post = metrics["return/post_adaptation"]
            print(f"iteration {learner.iteration}: return after adaptation {post:.2f}")
        return True  # False would stop the run here

    learner.learn(iterations=args.iterations, log_dir=args.out, callback=report, force=True)
    learner.close()

    learner = metarl.load(args.out)  # the run directory's latest checkpoint
    task = learner.env.unwrapped.sample_tasks(1, np.random.default_rng(3))[0]
    adapted = learner.adapt(task, steps=1)
    obs, _ = learner.env.reset(seed=0)
    print(f"{task}: first action before adaptation {learner.predict(obs)}, after {adapted.predict(obs)}")

    result = metarl.evaluate(learner, num_tasks=10, steps=2, seed=0)
    for k, mean in zip(result["steps"], result["mean_return"], strict=True):
        print(f"return after {k} steps: {mean:.2f}")
    return result


if __name__ == "__main__":
    main()
