"""How much of TRPO's curvature the meta-step needs: one paper-size HalfCheetahVel batch, then
one TRPO step with the KL Hessian-vector products on all tasks and on subsets.

    python benchmarks/curvature_subsample.py [--config FILE] [--fractions 1,0.25,0.1]

Prints, per fraction, the step's wall time, surrogate gain, KL, line-search steps and the cosine
between its conjugate-gradient direction and the one with all tasks.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from metarl import trpo
from metarl.config import load_config
from metarl.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="experiments/halfcheetah_vel.yaml")
    p.add_argument("--fractions", default="1,0.25,0.1")
    a = p.parse_args()
    config = load_config(a.config, ["iterations=1"])
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, out, progress=False)
        algo = trainer.algorithm
        tasks = algo.sampler.sample_tasks(config.meta_batch_size, trainer.rng)
        batches, valid, adapted, _ = algo.sample_inner_loop(tasks, trainer.rng, trainer.generator)
        trainer.sampler.close()
    theta0 = {k: v.detach().clone() for k, v in algo.policy.state_dict().items()}

    directions: dict[float, torch.Tensor] = {}
    real_cg = trpo.conjugate_gradient

    def recording_cg(hvp, b, iters=10, tol=1e-10):
        recording_cg.last = real_cg(hvp, b, iters, tol)
        return recording_cg.last

    trpo.conjugate_gradient = recording_cg
    n = config.meta_batch_size
    for frac in [float(x) for x in a.fractions.split(",")]:
        algo.policy.load_state_dict(theta0)
        n_sub = max(1, round(frac * n))
        curvature = None
        if n_sub < n:
            idx = torch.as_tensor(np.sort(np.random.default_rng(0).choice(n, n_sub, replace=False)))
            curvature = algo.curvature_kl(batches, valid, adapted, idx)
        start = time.perf_counter()
        result = trpo.trpo_step(
            list(algo.policy.parameters()),
            algo.meta_objective(batches, valid, adapted),
            max_kl=config.trpo.max_kl,
            curvature_kl=curvature,
        )
        elapsed = time.perf_counter() - start
        directions[frac] = recording_cg.last
        ref = directions[next(iter(directions))]
        cos = float(directions[frac] @ ref / (directions[frac].norm() * ref.norm()))
        print(
            f"curvature on {n_sub:>3} of {n} tasks: {elapsed:6.2f} s  surrogate gain "
            f"{result.loss_before - result.loss_after:.5f}  kl {result.kl:.5f}  line search "
            f"{result.ls_steps}  cosine to the first direction {cos:.3f}"
        )
    trpo.conjugate_gradient = real_cg


if __name__ == "__main__":
    main()
