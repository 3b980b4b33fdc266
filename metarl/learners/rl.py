"""What every RL meta-learner shares: the sampler, the policy, the inner loop over sampled
episodes, the opening of every meta-iteration, common metrics, and adaptation to a task.

A meta-iteration (:meth:`RLLearner.train_iteration`) draws the meta-batch's tasks, samples
``inner.steps`` batches of episodes, adapting per task after each, then the post-adaptation
episodes; the learner's :meth:`RLLearner.meta_step` does the rest. MAML-TRPO and FOMAML
differentiate the post-adaptation surrogate, Reptile moves θ towards the adapted parameters,
ProMP optimises a clipped surrogate with an inner-KL penalty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from metarl.adaptation import Advantages, compute_advantages, pg_step
from metarl.config import RL_KEYS
from metarl.episodes import Episodes
from metarl.errors import TaskProtocolError
from metarl.learners.base import ADAPT_STREAM, VALID_STREAM, Learner
from metarl.policies import AdaptedPolicy, MLPPolicy, Params, make_policy, policy_from_state
from metarl.sampling import EpisodeSampler, make_sampler
from metarl.tasks import PROTOCOL_METHODS, check_scoring_env, make_env, resolve_env_id


@dataclass
class InnerBatch:
    """Episodes of one inner step and their advantages."""

    episodes: Episodes
    advantages: Advantages

    def tasks(self, idx: Tensor) -> InnerBatch:
        """The same batch restricted to the tasks ``idx``."""
        return InnerBatch(self.episodes.tasks(idx), Advantages(self.advantages.values[:, idx]))


class RLLearner(Learner):
    """Base of the RL meta-learners: owns the policy θ, the sampler and the inner loop."""

    kind = "rl"
    kind_keys = RL_KEYS
    policy: MLPPolicy

    # --- construction ------------------------------------------------------------------------
    def _check_env(self) -> None:
        spec = resolve_env_id(self.config.env)
        env = self.env.unwrapped
        missing = [m for m in PROTOCOL_METHODS if not callable(getattr(env, m, None))]
        if missing:
            raise TaskProtocolError(
                f"{spec.id} ({type(env).__name__}) does not follow the task protocol: it has no "
                f"{', '.join(missing)}; a task env defines sample_tasks(n, rng), set_task(task) and "
                "get_task() (see metarl.TaskEnv, and metarl.check_task_env to test one)"
            )

    @classmethod
    def from_config(
        cls, config: Any, policy: torch.nn.Module | None = None, sampler: EpisodeSampler | None = None
    ) -> RLLearner:
        """The learner of a validated config; ``policy`` and ``sampler``, if given, replace the
        ones the config would make (tests use a fixed policy and no sampler at all: pass
        ``policy`` and ``sampler=None`` to build none until one is needed)."""
        learner = cls.__new__(cls)
        learner._setup(config)
        learner._sampler = sampler
        learner._build(policy=policy, eager=policy is None)
        return learner

    def _build(self, policy: torch.nn.Module | None, eager: bool) -> None:
        if not hasattr(self, "_sampler"):
            self._sampler = None
        self._valid_sampler: EpisodeSampler | None = getattr(self, "_valid_sampler", None)
        self._env: gym.Env | None = getattr(self, "_env", None)
        self._valid_nonfinite = 0
        if policy is None or eager:
            check_scoring_env(self.config)  # before any sampler (Ray's workers, Warp's build) starts
        if policy is None:
            sampler = self.sampler
            p = self.config.policy
            policy = self._init_parameters(
                lambda: make_policy(
                    sampler.obs_dim,
                    sampler.act_dim,
                    sampler.discrete,
                    p.hidden_sizes,
                    p.activation,
                    p.init_log_std,
                    p.init_output_scale,
                )
            )
        elif eager:
            _ = self.sampler
        self.policy = policy
        self._init_optimizer()

    def _restore(self, shapes: dict[str, Tensor], file: Path, tasks: Any) -> None:
        """Build an uninitialised policy shaped like a checkpoint's (no sampler until needed)."""
        p = self.config.policy
        try:
            policy = policy_from_state(shapes, p.hidden_sizes, p.activation, p.init_log_std)
        except ValueError:
            from metarl.errors import MetarlError

            raise MetarlError(f"{str(file)!r} holds no policy network") from None
        self._sampler = None
        self._build(policy=policy.to(self.device), eager=False)

    def _init_optimizer(self) -> None:
        """Create the outer optimizer's state (none by default)."""

    @property
    def sampler(self) -> EpisodeSampler:
        """The meta-batch's sampler (made on first use)."""
        if self._sampler is None:
            self._sampler = make_sampler(self.config)
        return self._sampler

    @property
    def env(self) -> gym.Env:
        """One env of the family (``learner.env.unwrapped.sample_tasks(n, rng)`` draws tasks)."""
        if getattr(self, "_env", None) is None:
            c = self.config
            self._env = make_env(c.env, max_episode_steps=c.horizon, **c.env_kwargs)
        return self._env

    def close(self) -> None:
        if getattr(self, "_sampler", None) is not None:
            self._sampler.close()
            self._sampler = None
        if getattr(self, "_valid_sampler", None) is not None:
            self._valid_sampler.close()
            self._valid_sampler = None
        if getattr(self, "_env", None) is not None:
            self._env.close()
            self._env = None

    # --- the inner loop ----------------------------------------------------------------------
    @property
    def first_order(self) -> bool:
        return self.config.inner.first_order

    @property
    def estimator(self) -> str:
        """The inner surrogate: ``vpg`` or ``lvc`` (see :func:`metarl.adaptation.inner_surrogate`)."""
        return self.config.inner.estimator

    def _advantages(self, episodes: Episodes) -> Advantages:
        c = self.config
        return compute_advantages(episodes, c.gamma, c.gae_lambda, c.normalize_advantages)

    def replay_inner_loop(self, params: Params, batches: list[InnerBatch], create_graph: bool) -> Params:
        """θ' after the inner steps on the stored ``batches`` (per-task parameters), as a function
        of ``params``: with ``create_graph`` (and second order) a loss on θ' differentiates back
        through every inner step."""
        first_order = self.first_order or not create_graph
        current, per_task = params, False
        for batch in batches:
            current = pg_step(
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

    def sample_inner_loop(
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
            params = pg_step(
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

    # --- one meta-iteration ------------------------------------------------------------------
    def train_iteration(self, rng: np.random.Generator, generator: torch.Generator) -> dict[str, float]:
        """Draw the meta-batch, run the inner loop, then the learner's :meth:`meta_step`."""
        tasks = self.sampler.sample_tasks(self.config.meta_batch_size, rng)
        batches, valid, adapted, timings = self.sample_inner_loop(tasks, rng, generator)
        t0 = time.perf_counter()
        specific = self.meta_step(batches, valid, adapted, rng)
        metrics = self.common_metrics(batches, valid, timings, time.perf_counter() - t0)
        metrics.update(specific)
        return metrics

    def meta_step(
        self, batches: list[InnerBatch], valid: Episodes, adapted: Params, rng: np.random.Generator
    ) -> dict[str, float]:
        """Update θ from the inner loop's episodes; returns the learner's own metrics, among
        them ``meta/accepted`` (and ``meta/kl`` where the step has a KL)."""
        raise NotImplementedError

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

    # --- validation --------------------------------------------------------------------------
    def _validation_sampler(self) -> EpisodeSampler:
        """The validation tasks' sampler (made on first use): in this process whatever
        ``sampler.backend`` (Ray and ``async`` too: the family's vector env, or ``sync`` when
        asked), ``episodes_per_task`` episodes per task, with ``eval_env_kwargs``, as
        ``evaluate`` samples."""
        if getattr(self, "_valid_sampler", None) is None:
            from metarl.sampling.local import Sampler

            c = self.config
            self._valid_sampler = Sampler(
                c.env,
                c.validation.tasks,
                c.episodes_per_task,
                c.horizon,
                backend="sync" if c.sampler.backend == "sync" else "auto",
                env_kwargs=c.scoring_env_kwargs(),
                num_threads=c.sampler.num_threads,
                rescale_actions=c.policy.rescale_actions,
                groups=c.sampler.groups,
            )
        return self._valid_sampler

    def validation_tasks(self) -> list[Any]:
        """The fixed validation tasks (see :meth:`Learner.validation_tasks`)."""
        rng = np.random.default_rng([self.config.seed, VALID_STREAM])
        return self._validation_sampler().sample_tasks(self.config.validation.tasks, rng)

    def validate(self) -> dict[str, float]:
        """The post-adaptation return on the validation tasks (see :meth:`Learner.validate`):
        ``inner.steps`` PG steps of ``episodes_per_task`` episodes each, the first of size
        ``inner.lr`` and later ones half that, as ``evaluate`` adapts."""
        from metarl.evaluation import adapt_to_tasks, check_adaptation

        c = self.config
        steps = c.inner.steps
        lr, later_lr = check_adaptation(c, steps, None, None, None)
        tasks = self.validation_tasks()
        rng, generator = self._validation_rng()
        sampler = self._validation_sampler()
        returns, _ = adapt_to_tasks(
            self.policy, c, sampler, tasks, steps, lr, later_lr, rng, generator, self.device
        )
        means = np.asarray(returns, dtype=np.float64).mean(axis=1)  # [steps + 1]
        metrics = {f"validation/return_after_{k}_steps": float(m) for k, m in enumerate(means)}
        metrics["validation/score"] = float(means[-1])
        return metrics

    # --- using a trained learner -------------------------------------------------------------
    def _local_sampler(self, num_tasks: int, episodes: int | None) -> EpisodeSampler:
        return make_sampler(self.config, num_tasks, episodes, ray=False)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The unadapted policy θ's actions for ``obs`` (see :meth:`AdaptedPolicy.predict`)."""
        return self.policy_for(None).predict(obs, deterministic)

    def policy_for(self, task: Any, params: Params | None = None) -> AdaptedPolicy:
        """θ (or ``params``) as an :class:`AdaptedPolicy` that acts in the env's action space."""
        from metarl.sampling.local import EnvActions

        theta = params if params is not None else self.policy.params()
        env = self.env
        actions = EnvActions(env.action_space, self.config.policy.rescale_actions)
        return AdaptedPolicy(self.policy, theta, actions, task)

    def adapt(
        self,
        task: Any,
        steps: int = 1,
        episodes: int | None = None,
        lr: float | None = None,
        later_lr: float | None = None,
        seed: int | None = None,
    ) -> AdaptedPolicy:
        """Adapt θ to ``task``: ``steps`` times, sample ``episodes`` episodes (default: the
        config's ``episodes_per_task``) on the task with the current parameters and take one
        policy-gradient step, of size ``lr`` (default: ``inner.lr``) first and ``later_lr``
        (default ``lr / 2``) after, the protocol ``evaluate`` scores. Returns the adapted policy;
        θ itself is unchanged. ``seed`` (default: the config's) seeds the episodes."""
        from metarl.evaluation import adapt_to_tasks, check_adaptation

        lr, later_lr = check_adaptation(self.config, steps, episodes, lr, later_lr)
        seed = self.config.seed if seed is None else seed
        rng = np.random.default_rng([seed, ADAPT_STREAM])
        generator = torch.Generator().manual_seed(seed)
        sampler = self._local_sampler(1, episodes)
        try:
            _, params = adapt_to_tasks(
                self.policy,
                self.config,
                sampler,
                [task],
                steps,
                lr,
                later_lr,
                rng,
                generator,
                self.device,
                score_last=False,
            )
        finally:
            sampler.close()
        one = {k: (v[0] if steps > 0 else v) for k, v in params.items()}
        return self.policy_for(task, one)

    def evaluate(self, num_tasks: int = 40, steps: int = 3, seed: int = 0, **kwargs: Any) -> dict[str, Any]:
        """Adapt to ``num_tasks`` held-out tasks and record the return after 0..``steps`` steps
        (see :func:`metarl.evaluation.adapt_and_evaluate` for the other arguments)."""
        from metarl.evaluation import adapt_and_evaluate

        kwargs.setdefault("device", self.device)
        result = adapt_and_evaluate(self.policy, self.config, num_tasks, steps, seed, **kwargs)
        result["method"] = self.method
        return result
