"""Sampling on Ray, for meta-batches that outgrow one machine.

:class:`RaySampler` has the :class:`~metarl.sampling.local.Sampler` interface, so no learner knows
where its episodes come from. Each Ray actor (:class:`RolloutWorker`) holds one vector env (the
family's batched engine where it has one, Gymnasium's otherwise) for a contiguous shard of the
meta-batch's tasks. Per call, the driver draws every sub-env's reset seed and every step's
action noise (exactly as the local sampler does), puts the policy in the object store once,
and each actor rolls out its shard with its tasks' parameters, seeds and noise. The driver
concatenates the shards in task order, so the episodes equal the local sampler's for the same
seed, whatever the number of workers.

An actor that dies is restarted by Ray (``max_restarts``); its shard is sampled again with the
same seeds and noise, so the iteration's episodes do not change, and the event is logged.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from typing import Any

import numpy as np
import torch

from metarl.episodes import Episodes
from metarl.errors import MetarlError
from metarl.policies import MLPPolicy, Params
from metarl.sampling.local import Sampler, draw_randomness
from metarl.tasks import task_api

log = logging.getLogger(__name__)

MAX_RESAMPLES = 3
RESTART_TIMEOUT_S = 120  # how long a restarting worker may stay unavailable


def import_ray() -> Any:
    """``ray``, or a one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise MetarlError(
            "the ray sampler backend needs Ray: pip install 'metarl[ray]' (or pip install 'ray>=2.9')"
        ) from None
    return ray


#: Attempts at starting a local Ray node: Ray gives its raylet a fixed 30 s to register, which
#: a machine under heavy load can miss once and make the next time.
RAY_START_ATTEMPTS = 3


def init_ray(address: str = "", **kwargs: Any) -> Any:
    """Connect to the Ray cluster at ``address``, or start Ray in this process (``""`` or
    ``local``), unless Ray is already running here; returns ``ray``. A local start that times out
    is tried again (:data:`RAY_START_ATTEMPTS` in all); failing that, or failing to reach the
    cluster, is a one-line :class:`MetarlError`. ``kwargs`` go to ``ray.init``."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kwargs = {"include_dashboard": False, "log_to_driver": False, **kwargs}
    if address and address != "local":
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # Ray raises ConnectionError, ValueError or a bare Exception
            raise MetarlError(
                f"cannot reach the Ray cluster at {address!r}: {' '.join(str(exc).split())}"
            ) from None
        return ray
    attempt = 1
    while True:
        try:
            ray.init(**kwargs)
            return ray
        except Exception as exc:
            ray.shutdown()  # the processes of the failed start
            if "timed out during startup" not in str(exc) or attempt == RAY_START_ATTEMPTS:
                tries = f" ({attempt} attempts)" if attempt > 1 else ""
                raise MetarlError(
                    f"Ray could not start on this machine{tries}: {' '.join(str(exc).split())}"
                ) from None
        log.warning("Ray's node did not start in time (attempt %d); starting it again", attempt)
        attempt += 1


class RolloutWorker:
    """A Ray actor's state: one local :class:`Sampler` for its shard of tasks."""

    def __init__(
        self, env_id: str, num_tasks: int, episodes_per_task: int, horizon: int, **kwargs: Any
    ) -> None:
        torch.set_num_threads(1)
        self.sampler = Sampler(env_id, num_tasks, episodes_per_task, horizon, **kwargs)

    def pid(self) -> int:
        return os.getpid()

    def run(
        self,
        policy: MLPPolicy,
        params: Params,
        per_task: bool,
        tasks: list[Any],
        seeds: np.ndarray,
        noise: torch.Tensor,
    ) -> Episodes:
        self.sampler.set_tasks(tasks)
        return self.sampler.run(policy, params, per_task, seeds, noise)


class RaySampler:
    """The :class:`Sampler` interface over ``num_workers`` Ray actors, one shard of tasks each."""

    backend = "ray"

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        horizon: int,
        num_workers: int = 2,
        address: str = "",
        env_kwargs: dict[str, Any] | None = None,
        num_threads: int = 0,
        rescale_actions: bool = True,
        inner_backend: str = "auto",
        groups: int = 0,
    ) -> None:
        ray = init_ray(address)
        self.ray = ray
        self.env_id = env_id
        self.num_tasks, self.episodes_per_task, self.horizon = num_tasks, episodes_per_task, horizon
        self.shards = [s for s in np.array_split(np.arange(num_tasks), min(num_workers, num_tasks)) if len(s)]
        kwargs = {
            "backend": inner_backend,
            "env_kwargs": env_kwargs,
            "num_threads": num_threads,
            "rescale_actions": rescale_actions,
            "groups": groups,
        }
        remote = ray.remote(max_restarts=MAX_RESAMPLES, max_task_retries=0)(RolloutWorker)
        self.workers = [
            remote.remote(env_id, len(shard), episodes_per_task, horizon, **kwargs) for shard in self.shards
        ]
        # Spaces, action mapping and task sampling come from a local probe of one task.
        self._local = Sampler(
            env_id, 1, 1, horizon, backend="sync", env_kwargs=env_kwargs, rescale_actions=rescale_actions
        )
        self.obs_dim, self.act_dim, self.discrete = (
            self._local.obs_dim,
            self._local.act_dim,
            self._local.discrete,
        )
        self.env = self._local.env
        self._task_source = task_api(self._local.env, env_id, **(env_kwargs or {}))
        self._tasks: list[Any] | None = None
        self.restarts = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        return self._task_source.sample_tasks(n, rng)

    def set_tasks(self, tasks: list[Any]) -> None:
        if len(tasks) != self.num_tasks:
            raise ValueError(f"sampler expects {self.num_tasks} tasks, got {len(tasks)}")
        self._tasks = list(tasks)

    def worker_pids(self) -> list[int]:
        return self.ray.get([w.pid.remote() for w in self.workers])

    def sample(
        self,
        policy: MLPPolicy,
        params: Params,
        rng: np.random.Generator,
        generator: torch.Generator,
        per_task_params: bool = False,
    ) -> Episodes:
        """As :meth:`Sampler.sample`; the shards run in parallel on the actors."""
        if self._tasks is None:
            raise RuntimeError("set_tasks must be called before sample")
        N, E, T = self.num_tasks, self.episodes_per_task, self.horizon
        seeds, noise = draw_randomness(policy, N, E, T, rng, generator)
        # Workers sample on the CPU: they get a CPU copy of the policy and of its parameters.
        params = {k: v.detach().cpu() for k, v in params.items()}
        if any(p.device.type != "cpu" for p in policy.parameters()):
            policy = copy.deepcopy(policy).cpu()
        policy_ref = self.ray.put(policy)

        def call(i: int) -> Any:
            shard = self.shards[i]
            lo, hi = int(shard[0]), int(shard[-1]) + 1
            shard_params = {k: v[lo:hi] for k, v in params.items()} if per_task_params else params
            return self.workers[i].run.remote(
                policy_ref,
                shard_params,
                per_task_params,
                self._tasks[lo:hi],
                seeds[lo * E : hi * E],
                noise[:, lo:hi],
            )

        pending = {i: call(i) for i in range(len(self.workers))}
        results: dict[int, Episodes] = {}
        deaths = dict.fromkeys(pending, 0)
        restarting = dict.fromkeys(pending, False)
        unavailable = getattr(self.ray.exceptions, "ActorUnavailableError", ())
        deadline = 0.0
        while pending:
            for i, ref in list(pending.items()):
                try:
                    results[i] = self.ray.get(ref)
                    del pending[i]
                except self.ray.exceptions.RayActorError as exc:
                    # A worker that died is restarted by Ray; until it is back, calls fail as
                    # "unavailable": one death, however many times it answers so meanwhile.
                    if not (isinstance(exc, unavailable) and restarting[i]):
                        deaths[i] += 1
                        if deaths[i] > MAX_RESAMPLES:
                            died = f"Ray worker {i} died {deaths[i]} times"
                            raise MetarlError(f"{self.env_id}: {died} ({exc})") from None
                        self.restarts += 1
                        restarting[i] = True
                        deadline = time.monotonic() + RESTART_TIMEOUT_S
                        log.warning(
                            "Ray worker %d died (%s); restarted, re-sampling its %d tasks "
                            "with the same seeds",
                            i,
                            type(exc).__name__,
                            len(self.shards[i]),
                        )
                    elif time.monotonic() > deadline:
                        raise MetarlError(
                            f"{self.env_id}: Ray worker {i} did not come back within {RESTART_TIMEOUT_S} s"
                        ) from None
                    if isinstance(exc, unavailable):
                        time.sleep(0.2)
                    pending[i] = call(i)
        return _concat([results[i] for i in range(len(self.workers))])

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Policy actions as the env receives them (the workers map them the same way)."""
        return self._local.env_actions(actions)

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        self._local.close()


def _concat(parts: list[Episodes]) -> Episodes:
    """Episodes of consecutive task shards as one batch, padded to the longest shard's length
    with zeros (masked), as the local sampler leaves finished episodes."""
    T = max(p.obs.shape[0] for p in parts)

    def pad(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == T:
            return x
        return torch.cat([x, torch.zeros(T - x.shape[0], *x.shape[1:], dtype=x.dtype, device=x.device)])

    return Episodes(
        obs=torch.cat([pad(p.obs) for p in parts], 1),
        actions=torch.cat([pad(p.actions) for p in parts], 1),
        rewards=torch.cat([pad(p.rewards) for p in parts], 1),
        mask=torch.cat([pad(p.mask) for p in parts], 1),
    )
