"""Reptile (Nichol, Achiam and Schulman 2018, "On First-Order Meta-Learning Algorithms"), RL form.

For each task of the meta-batch, take ``inner.steps`` policy-gradient steps from θ (each on
fresh episodes sampled with the current adapted parameters), giving W_i; then move θ towards
their mean: θ ← θ + ε · mean_i(W_i − θ), with ε = ``reptile.epsilon``. There is no gradient
through the adaptation and no post-adaptation objective; the post-adaptation episodes are
sampled only to log the return after adaptation.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from metarl.learners.base import MetaLearner
from metarl.policies import Params


def reptile_update(theta: Params, adapted: Params, epsilon: float) -> dict[str, torch.Tensor]:
    """θ + ε · mean_i(W_i − θ) for per-task parameters ``adapted`` (leading task dimension)."""
    return {k: v + epsilon * (adapted[k].mean(0) - v) for k, v in theta.items()}


class Reptile(MetaLearner):
    """Reptile's meta-update on per-task policy-gradient adaptation."""

    @property
    def first_order(self) -> bool:
        return True

    def train_iteration(self, rng: np.random.Generator, generator: torch.Generator) -> dict[str, float]:
        c = self.config
        tasks = self.sampler.sample_tasks(c.meta_batch_size, rng)
        batches, valid, adapted, timings = self.sample_adaptation(tasks, rng, generator)
        t0 = time.perf_counter()
        theta = {k: v.detach() for k, v in self.policy.params().items()}
        new = reptile_update(theta, adapted, c.reptile.epsilon)
        accepted = all(torch.isfinite(v).all() for v in new.values())
        if accepted:
            with torch.no_grad():
                for name, p in self.policy.named_parameters():
                    p.copy_(new[name])
        else:
            self.last_failure = "non-finite adapted parameters"
        step = torch.sqrt(sum(((new[k] - theta[k]) ** 2).sum() for k in theta))
        metrics = self.common_metrics(batches, valid, timings, time.perf_counter() - t0)
        metrics.update({"meta/accepted": float(accepted), "meta/step_norm": float(step)})
        return metrics
