"""First-order MAML (Finn et al. 2017, section 5.3's "first-order approximation").

FOMAML treats each inner gradient as a constant (dθ'/dθ = I), so its meta-gradient is the
post-adaptation surrogate's gradient taken at θ'_i and summed back onto θ: no second
derivatives. The outer step is TRPO, as in MAML-TRPO, or Adam (``outer_optimizer="adam"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metarl.config import TRPO_KEYS
from metarl.episodes import Episodes
from metarl.learners.base import document
from metarl.learners.maml_trpo import MAMLTRPO
from metarl.learners.registry import register
from metarl.learners.rl import InnerBatch
from metarl.optim.first_order import minimize
from metarl.policies import Params


@register
@document
class FOMAML(MAMLTRPO):
    """MAML without the second-order terms; TRPO or Adam on the post-adaptation surrogate."""

    algorithm = "fomaml"
    hyperparameters = ("inner.estimator", "outer.optimizer", "outer.lr", "outer.steps", *TRPO_KEYS)

    def _init_optimizer(self) -> None:
        self.optimizer = None
        if self.config.outer.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.outer.lr)

    @property
    def first_order(self) -> bool:
        return True

    def optimizer_state(self) -> dict[str, Any]:
        return {"adam": self.optimizer.state_dict()} if self.optimizer is not None else {}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        if self.optimizer is not None and "adam" in state:
            self.optimizer.load_state_dict(state["adam"])

    def meta_step(
        self, batches: list[InnerBatch], valid: Episodes, adapted: Params, rng: np.random.Generator
    ) -> dict[str, float]:
        if self.optimizer is None:
            return super().meta_step(batches, valid, adapted, rng)
        loss_and_kl = self.meta_objective(batches, valid, adapted)
        accepted, loss = minimize(self.optimizer, lambda: loss_and_kl(False)[0], self.config.outer.steps)
        if not accepted:
            self.last_failure = "non-finite gradient"
        loss_after, kl_after = (x.detach() for x in loss_and_kl(False))  # the inner step needs autograd
        return {
            "meta/accepted": float(accepted),
            "meta/kl": float(kl_after),
            "meta/surrogate_before": -float(loss),
            "meta/surrogate_after": -float(loss_after),
        }
