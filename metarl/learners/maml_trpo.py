"""MAML with a TRPO meta-step (Finn, Abbeel and Levine 2017, "Model-Agnostic Meta-Learning
for Fast Adaptation of Deep Networks", section 3.2 and the RL experiments of section 5.3).

One meta-iteration:
1. draw ``meta_batch_size`` tasks;
2. for each inner step, sample episodes with the current (adapted) policy and take a vanilla-PG
   step per task: θ'_i = θ − α ∇L_i(θ);
3. sample post-adaptation episodes with θ'_i;
4. TRPO on the post-adaptation surrogate, differentiating through the inner step(s)
   (second order unless ``inner.first_order``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from metarl.adaptation import masked_task_mean
from metarl.config import TRPO_KEYS, curvature_fraction
from metarl.episodes import Episodes
from metarl.learners.base import document
from metarl.learners.registry import register
from metarl.learners.rl import InnerBatch, RLLearner
from metarl.optim.trpo import TRPOResult, trpo_step
from metarl.policies import Params

__all__ = ["InnerBatch", "MAMLTRPO"]


@register
@document
class MAMLTRPO(RLLearner):
    """MAML with a TRPO meta-step (Finn et al. 2017): second order through the inner
    policy-gradient steps (first order with ``first_order=True``).

    ``metarl.MAMLTRPO("metarl/HalfCheetahVel-v0", meta_batch_size=40, seed=0).learn(500)``
    """

    algorithm = "maml_trpo"
    hyperparameters = ("inner.first_order", "inner.estimator", *TRPO_KEYS)

    def meta_objective(
        self, batches: list[InnerBatch], valid: Episodes, old: Params | None = None
    ) -> Callable[[bool], tuple[Tensor, Tensor]]:
        """``loss_and_kl(create_graph)`` for TRPO: the post-adaptation surrogate and mean KL,
        both relative to ``old``, the post-adaptation parameters of the current θ (computed
        here unless the caller already has them)."""
        valid_advantages = self._advantages(valid)
        self._valid_nonfinite = valid_advantages.nonfinite
        valid_adv = valid_advantages.values
        theta = self.policy.params()
        if old is None:
            old = self.replay_inner_loop(theta, batches, create_graph=False)
        old = {k: v.detach() for k, v in old.items()}
        old_dist = tuple(x.detach() for x in self.policy.dist(old, valid.obs, task_dim=1))
        old_logp = self.policy.log_prob(old_dist, valid.actions)

        def loss_and_kl(create_graph: bool) -> tuple[Tensor, Tensor]:
            adapted = self.replay_inner_loop(theta, batches, create_graph=create_graph)
            dist = self.policy.dist(adapted, valid.obs, task_dim=1)
            ratio = torch.exp(self.policy.log_prob(dist, valid.actions) - old_logp)
            loss = -masked_task_mean(ratio * valid_adv, valid.mask).mean()
            kl = masked_task_mean(self.policy.kl(old_dist, dist), valid.mask)
            return loss, kl.mean()

        return loss_and_kl

    def curvature_kl(
        self, batches: list[InnerBatch], valid: Episodes, old: Params, idx: Tensor
    ) -> Callable[[], Tensor]:
        """The mean post-adaptation KL over the tasks ``idx`` only, twice differentiable in θ:
        its Hessian costs ``len(idx) / num_tasks`` of the full one, as each task adapts alone."""
        sub_batches = [b.tasks(idx) for b in batches]
        sub_valid = valid.tasks(idx)
        old_dist = tuple(
            x.detach()
            for x in self.policy.dist({k: v[idx].detach() for k, v in old.items()}, sub_valid.obs, task_dim=1)
        )

        def kl() -> Tensor:
            adapted = self.replay_inner_loop(self.policy.params(), sub_batches, create_graph=True)
            per_step = self.policy.kl(old_dist, self.policy.dist(adapted, sub_valid.obs, task_dim=1))
            return masked_task_mean(per_step, sub_valid.mask).mean()

        return kl

    def trpo_meta_step(
        self,
        batches: list[InnerBatch],
        valid: Episodes,
        adapted: Params,
        fraction: float,
        rng: np.random.Generator,
    ) -> tuple[TRPOResult, int]:
        """One TRPO step on θ whose KL Hessian comes from ``fraction`` of the tasks (drawn with
        ``rng``; all of them at 1.0); returns what the step did and how many tasks shaped it."""
        c = self.config
        curvature = None
        n_sub = max(1, round(fraction * c.meta_batch_size))
        if n_sub < c.meta_batch_size:
            chosen = np.sort(rng.choice(c.meta_batch_size, n_sub, replace=False))
            idx = torch.as_tensor(chosen, device=self.device)
            curvature = self.curvature_kl(batches, valid, adapted, idx)
        result = trpo_step(
            list(self.policy.parameters()),
            self.meta_objective(batches, valid, adapted),
            max_kl=c.trpo.max_kl,
            cg_iters=c.trpo.cg_iters,
            cg_damping=c.trpo.cg_damping,
            ls_max_steps=c.trpo.ls_max_steps,
            ls_backtrack_ratio=c.trpo.ls_backtrack_ratio,
            curvature_kl=curvature,
        )
        return result, n_sub

    def meta_step(
        self, batches: list[InnerBatch], valid: Episodes, adapted: Params, rng: np.random.Generator
    ) -> dict[str, float]:
        """TRPO on the post-adaptation surrogate, its KL Hessian from all tasks or a subsample."""
        fraction = curvature_fraction(self.config, self.device.type)
        result, n_sub = self.trpo_meta_step(batches, valid, adapted, fraction, rng)
        if not result.accepted:
            self.last_failure = result.reason
        return {
            "meta/accepted": float(result.accepted),
            "meta/kl": result.kl,
            "meta/surrogate_before": -result.loss_before,
            "meta/surrogate_after": -result.loss_after,
            "trpo/line_search_steps": float(result.ls_steps),
            "trpo/curvature_tasks": float(n_sub),
        }
