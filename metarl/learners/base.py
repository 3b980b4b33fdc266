"""What every meta-learner shares: the inner loop over sampled episodes, and common metrics.

A meta-iteration samples ``inner.steps`` batches of episodes, adapting per task after each
(``adapted``), then the post-adaptation episodes. Algorithms differ in what they do with them:
MAML-TRPO and FOMAML differentiate the post-adaptation surrogate, Reptile moves θ towards the
adapted parameters, ProMP optimises a clipped surrogate with an inner-KL penalty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metarl.adaptation import Advantages, adapt, compute_advantages
from metarl.config import Config
from metarl.episodes import Episodes
from metarl.policies import MLPPolicy, Params
from metarl.sampling.local import Sampler


@dataclass
class InnerBatch:
    """Episodes of one inner step and their advantages."""

    episodes: Episodes
    advantages: Advantages

    def tasks(self, idx: Tensor) -> InnerBatch:
        """The same batch restricted to the tasks ``idx``."""
        return InnerBatch(self.episodes.tasks(idx), Advantages(self.advantages.values[:, idx]))


class MetaLearner:
    """Base of the meta-learners: owns the policy θ, the sampler and the config."""

    def __init__(self, policy: MLPPolicy, sampler: Sampler, config: Config) -> None:
        self.policy, self.sampler, self.config = policy, sampler, config
        #: Where the learner's tensors live: the policy's device. Episodes come from the sampler
        #: on the CPU and are moved here once per sampling call.
        self.device = next(policy.parameters()).device
        self.last_failure = ""  # why the last rejected meta-step was rejected
        self._valid_nonfinite = 0

    def state_dict(self) -> dict[str, Any]:
        """Optimizer state kept across iterations (none by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @property
    def first_order(self) -> bool:
        return self.config.inner.first_order

    @property
    def estimator(self) -> str:
        """The inner surrogate: ``vpg`` or ``lvc`` (see :func:`metarl.adaptation.vpg_loss`)."""
        return self.config.inner.estimator

    def _advantages(self, episodes: Episodes) -> Advantages:
        c = self.config
        return compute_advantages(episodes, c.gamma, c.gae_lambda, c.normalize_advantages)

    def adapted(self, params: Params, batches: list[InnerBatch], create_graph: bool) -> Params:
        """θ' after the inner steps on ``batches`` (per-task parameters)."""
        first_order = self.first_order or not create_graph
        current, per_task = params, False
        for batch in batches:
            current = adapt(
                self.policy,
                current,
                batch.episodes,
                batch.advantages.values,
                self.config.inner.lr,
                first_order=first_order,
                per_task=per_task,
                estimator=self.estimator,
            )
            per_task = True
        return current

    def sample_adaptation(
        self, tasks: list[Any], rng: np.random.Generator, generator: torch.Generator
    ) -> tuple[list[InnerBatch], Episodes, Params, dict[str, float]]:
        """Inner-loop data: the episodes of every inner step, the adapted (per-task, detached)
        parameters and the post-adaptation episodes sampled with them."""
        timings = {"sampling": 0.0, "adaptation": 0.0}
        self.sampler.set_tasks(tasks)
        params: Params = {k: v.detach() for k, v in self.policy.params().items()}
        per_task = False
        batches = []
        for _ in range(self.config.inner.steps):
            t0 = time.perf_counter()
            episodes = self.sampler.sample(self.policy, params, rng, generator, per_task).to(self.device)
            t1 = time.perf_counter()
            batch = InnerBatch(episodes, self._advantages(episodes))
            batches.append(batch)
            params = adapt(
                self.policy,
                params,
                episodes,
                batch.advantages.values,
                self.config.inner.lr,
                first_order=True,
                per_task=per_task,
                estimator=self.estimator,
            )
            params = {k: v.detach() for k, v in params.items()}
            per_task = True
            timings["sampling"] += t1 - t0
            timings["adaptation"] += time.perf_counter() - t1
        t0 = time.perf_counter()
        valid = self.sampler.sample(self.policy, params, rng, generator, True).to(self.device)
        timings["sampling"] += time.perf_counter() - t0
        return batches, valid, params, timings

    def common_metrics(
        self, batches: list[InnerBatch], valid: Episodes, timings: dict[str, float], meta_time: float
    ) -> dict[str, float]:
        """Returns, sampler and guard figures every meta-learner logs."""
        metrics = {
            "return/pre_adaptation": float(batches[0].episodes.returns_per_task().mean()),
            "return/post_adaptation": float(valid.returns_per_task().mean()),
            "baseline/retries": float(sum(b.advantages.baseline_retries for b in batches)),
            "baseline/fallbacks": float(sum(b.advantages.baseline_fallbacks for b in batches)),
            "guard/nonfinite_advantages": float(
                sum(b.advantages.nonfinite for b in batches) + self._valid_nonfinite
            ),
            "sampler/env_steps": float(sum(b.episodes.num_steps for b in batches) + valid.num_steps),
            "time/sampling_s": timings["sampling"],
            "time/adaptation_s": timings["adaptation"],
            "time/meta_step_s": meta_time,
        }
        log_std = getattr(self.policy, "log_std", None)
        if log_std is not None:
            metrics["policy/std"] = float(log_std.detach().exp().mean())
        for k, batch in enumerate(batches[1:], start=1):
            metrics[f"return/after_{k}_steps"] = float(batch.episodes.returns_per_task().mean())
        return metrics

    def train_iteration(self, rng: np.random.Generator, generator: torch.Generator) -> dict[str, float]:
        """One meta-iteration; returns the metrics to log (``meta/accepted`` among them)."""
        raise NotImplementedError
