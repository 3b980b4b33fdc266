"""Reptile (Nichol, Achiam and Schulman 2018, "On First-Order Meta-Learning Algorithms"), RL form.

For each task of the meta-batch, take ``inner_steps`` policy-gradient steps from θ (each on
fresh episodes sampled with the current adapted parameters), giving W_i; then move θ towards
their mean: θ ← θ + ε · mean_i(W_i − θ), with ε = ``epsilon``. There is no gradient through the
adaptation and no post-adaptation objective; the post-adaptation episodes are sampled only to
log the return after adaptation.
"""

from __future__ import annotations

import numpy as np

from metarl.episodes import Episodes
from metarl.learners.base import document
from metarl.learners.registry import register
from metarl.learners.rl import InnerBatch, RLLearner
from metarl.optim.first_order import reptile_step, reptile_update
from metarl.policies import Params

__all__ = ["Reptile", "reptile_update"]


@register
@document
class Reptile(RLLearner):
    """Reptile's meta-update on per-task policy-gradient adaptation."""

    algorithm = "reptile"
    hyperparameters = ("reptile.epsilon",)

    @property
    def first_order(self) -> bool:
        return True

    def meta_step(
        self, batches: list[InnerBatch], valid: Episodes, adapted: Params, rng: np.random.Generator
    ) -> dict[str, float]:
        accepted, norm = reptile_step(self.policy, adapted, self.config.reptile.epsilon)
        if not accepted:
            self.last_failure = "non-finite adapted parameters"
        return {"meta/accepted": float(accepted), "meta/step_norm": norm}
