"""ProMP (Rothfuss, Lee, Clavera, Asfour and Abbeel 2019, "ProMP: Proximal Meta-Policy Search").

* Inner step: the low-variance curvature (LVC) surrogate, whose Hessian keeps the term the
  score-function surrogate drops (see :func:`metarl.adaptation.vpg_loss`).
* Outer objective, maximised with ``outer.steps`` Adam steps per iteration: the PPO-clip
  surrogate of the post-adaptation episodes, min(r A, clip(r, 1 ± ε) A) with r = π_θ'/π_θ'old,
  minus η_i · KL(π_θold || π_θ) on each task's pre-adaptation episodes.
* Each η_i adapts after the iteration: halved when task i's inner KL is under target / 1.5,
  doubled when it is over target × 1.5.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from metarl.adaptation import masked_task_mean
from metarl.config import Config
from metarl.learners.base import MetaLearner
from metarl.policies import MLPPolicy
from metarl.sampling.local import Sampler


class ProMP(MetaLearner):
    """Proximal Meta-Policy Search: LVC inner step, clipped outer surrogate, inner-KL penalty."""

    def __init__(self, policy: MLPPolicy, sampler: Sampler, config: Config) -> None:
        super().__init__(policy, sampler, config)
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=config.outer.lr)
        self.kl_coef = torch.full(
            (config.meta_batch_size,), float(config.promp.init_inner_kl_coef), device=self.device
        )

    @property
    def estimator(self) -> str:
        return "lvc"

    def state_dict(self) -> dict[str, Any]:
        return {"adam": self.optimizer.state_dict(), "kl_coef": self.kl_coef.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["adam"])
        self.kl_coef = state["kl_coef"].to(self.device, copy=True)

    def train_iteration(self, rng: np.random.Generator, generator: torch.Generator) -> dict[str, float]:
        c, policy = self.config, self.policy
        tasks = self.sampler.sample_tasks(c.meta_batch_size, rng)
        batches, valid, adapted, timings = self.sample_adaptation(tasks, rng, generator)
        t0 = time.perf_counter()
        pre = batches[0].episodes
        valid_adv = self._advantages(valid)
        self._valid_nonfinite = valid_adv.nonfinite
        with torch.no_grad():  # copies: θ changes in place below, and views of it would follow
            old_pre = tuple(x.clone() for x in policy.dist(policy.params(), pre.obs))
            old_post = tuple(x.clone() for x in policy.dist(adapted, valid.obs, task_dim=1))
            old_logp = policy.log_prob(old_post, valid.actions)
        eps = c.promp.clip_eps
        accepted = 1.0
        for _ in range(c.outer.steps):
            theta = policy.params()
            dist = policy.dist(self.adapted(theta, batches, create_graph=True), valid.obs, task_dim=1)
            ratio = torch.exp(policy.log_prob(dist, valid.actions) - old_logp)
            clipped = torch.min(ratio * valid_adv.values, ratio.clamp(1 - eps, 1 + eps) * valid_adv.values)
            surrogate = masked_task_mean(clipped, valid.mask)
            inner_kl = masked_task_mean(policy.kl(old_pre, policy.dist(theta, pre.obs)), pre.mask)
            loss = -surrogate.mean() + (self.kl_coef * inner_kl).mean()
            self.optimizer.zero_grad()
            loss.backward()
            if not all(torch.isfinite(p.grad).all() for p in policy.parameters() if p.grad is not None):
                self.optimizer.zero_grad()
                accepted, self.last_failure = 0.0, "non-finite gradient"
                break
            self.optimizer.step()
        theta = policy.params()
        adapted_after = self.adapted(theta, batches, create_graph=False)  # needs autograd
        with torch.no_grad():
            inner_kl = masked_task_mean(policy.kl(old_pre, policy.dist(theta, pre.obs)), pre.mask)
            dist = policy.dist(adapted_after, valid.obs, task_dim=1)
            outer_kl = masked_task_mean(policy.kl(old_post, dist), valid.mask).mean()
        target = c.promp.target_inner_kl
        self.kl_coef = torch.where(inner_kl < target / 1.5, self.kl_coef / 2, self.kl_coef)
        self.kl_coef = torch.where(inner_kl > target * 1.5, self.kl_coef * 2, self.kl_coef)
        metrics = self.common_metrics(batches, valid, timings, time.perf_counter() - t0)
        metrics.update(
            {
                "meta/accepted": accepted,
                "meta/kl": float(outer_kl),
                "promp/surrogate": float(surrogate.mean().detach()),
                "promp/inner_kl": float(inner_kl.mean()),
                "promp/inner_kl_coef": float(self.kl_coef.mean()),
            }
        )
        return metrics
