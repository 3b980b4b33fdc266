"""First-order MAML (Finn, Abbeel and Levine 2017, section 5.2).

The meta-gradient treats each inner gradient as a constant (dθ'/dθ = I), so it is the
post-adaptation surrogate's gradient taken at θ'_i and summed back onto θ: no second
derivatives. The outer step is TRPO, as in MAML-TRPO, or Adam (``outer.optimizer``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from metarl.config import Config
from metarl.learners.maml_trpo import MAMLTRPO
from metarl.policies import MLPPolicy
from metarl.sampling.local import Sampler


class FOMAML(MAMLTRPO):
    """MAML without the second-order terms; TRPO or Adam on the post-adaptation surrogate."""

    def __init__(self, policy: MLPPolicy, sampler: Sampler, config: Config) -> None:
        super().__init__(policy, sampler, config)
        self.optimizer = None
        if config.outer.optimizer == "adam":
            self.optimizer = torch.optim.Adam(policy.parameters(), lr=config.outer.lr)

    @property
    def first_order(self) -> bool:
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"adam": self.optimizer.state_dict()} if self.optimizer is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.optimizer is not None and "adam" in state:
            self.optimizer.load_state_dict(state["adam"])

    def train_iteration(self, rng: np.random.Generator, generator: torch.Generator) -> dict[str, float]:
        if self.optimizer is None:
            return super().train_iteration(rng, generator)
        c = self.config
        tasks = self.sampler.sample_tasks(c.meta_batch_size, rng)
        batches, valid, adapted, timings = self.sample_adaptation(tasks, rng, generator)
        t0 = time.perf_counter()
        loss_and_kl = self.meta_objective(batches, valid, adapted)
        accepted = 1.0
        for _ in range(c.outer.steps):
            loss, kl = loss_and_kl(False)
            self.optimizer.zero_grad()
            loss.backward()
            grads = [p.grad for p in self.policy.parameters() if p.grad is not None]
            if not all(torch.isfinite(g).all() for g in grads):
                self.optimizer.zero_grad()
                accepted, self.last_failure = 0.0, "non-finite gradient"
                break
            self.optimizer.step()
        loss_after, kl_after = (x.detach() for x in loss_and_kl(False))  # the inner step needs autograd
        metrics = self.common_metrics(batches, valid, timings, time.perf_counter() - t0)
        metrics.update(
            {
                "meta/accepted": accepted,
                "meta/kl": float(kl_after),
                "meta/surrogate_before": -float(loss.detach()),
                "meta/surrogate_after": -float(loss_after),
            }
        )
        return metrics
