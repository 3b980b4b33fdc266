"""Rollouts of a (possibly per-task adapted) policy on a vector env with one task per sub-env.

The sampler owns one Gymnasium ``VectorEnv`` of ``num_tasks × episodes_per_task`` sub-envs.
Sub-env ``i * episodes_per_task + j`` runs episode ``j`` of task ``i``. Every call resets all
sub-envs with fresh seeds and runs one episode in each, for at most ``horizon`` steps; steps
after an episode ended are masked out. Which vector env runs underneath (the family's own
vectorized twin, or Gymnasium's Sync/Async vector envs) is chosen here and nowhere else.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from metarl.errors import EnvFaultError, EnvNotFoundError, SamplerError
from metarl.policies import MLPPolicy, Params
from metarl.tasks import set_tasks, task_api, unknown_env_message

log = logging.getLogger(__name__)


@dataclass
class Episodes:
    """A batch of episodes grouped by task; time-major.

    ``obs`` [T, N, E, obs_dim], ``actions`` [T, N, E, act_dim] (Box) or [T, N, E] action indices
    (Discrete), ``rewards`` and ``mask``
    [T, N, E] for N tasks and E episodes per task. ``mask[t]`` is 1 while the episode runs.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor

    @property
    def num_steps(self) -> int:
        """Env steps that belong to episodes (masked steps excluded)."""
        return int(self.mask.sum().item())

    def tasks(self, idx: Tensor) -> Episodes:
        """The episodes of the tasks ``idx`` only."""
        return Episodes(self.obs[:, idx], self.actions[:, idx], self.rewards[:, idx], self.mask[:, idx])

    def returns_per_task(self) -> Tensor:
        """Undiscounted episode return averaged over each task's episodes: [N]."""
        return self.rewards.sum(0).mean(-1)


def _import_user_module(module: str) -> None:
    """Import a user's env module, looking in the current directory too (as ``python -m`` does;
    the ``metarl`` console script does not put it on ``sys.path``)."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name is None or not module.startswith(exc.name) or cwd in sys.path:
            raise
        sys.path.append(cwd)
        importlib.import_module(module)


class TaskFaultWrapper(gym.Wrapper):
    """Re-raises an exception from the env's ``reset``/``step`` with the task in force named."""

    def _fault(self, where: str, exc: Exception) -> EnvFaultError:
        try:
            task = repr(self.env.unwrapped.get_task())
        except Exception:
            task = "unknown"
        return EnvFaultError(f"{type(exc).__name__} in {where}: {exc} (task {task})")

    def reset(self, **kwargs: Any):
        try:
            return self.env.reset(**kwargs)
        except Exception as exc:
            raise self._fault("reset", exc) from exc

    def step(self, action):
        try:
            return self.env.step(action)
        except Exception as exc:
            raise self._fault("step", exc) from exc


def resolve_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id`` (importing ``module:`` first), or a one-line error."""
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            _import_user_module(module)
        except ImportError as exc:
            raise EnvNotFoundError(f"env id {module}:{env_id}: cannot import {module!r} ({exc})") from None
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        raise EnvNotFoundError(unknown_env_message(env_id)) from None


def make_vector_env(
    env_id: str,
    num_envs: int,
    horizon: int,
    backend: str = "auto",
    num_threads: int = 0,
    **env_kwargs: Any,
) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies of ``env_id`` with ``horizon`` as time limit.

    ``backend="auto"`` uses the family's ``vector_entry_point`` when it has one, and
    ``SyncVectorEnv`` otherwise; ``"sync"`` and ``"async"`` force Gymnasium's vector envs.
    ``num_threads`` (0: the usable cores) goes to a vector entry point that takes it.
    """
    spec = resolve_env_id(env_id)
    if backend == "auto":
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    else:
        mode = backend
    kwargs = dict(env_kwargs)
    if mode == "vector_entry_point":
        creator = spec.vector_entry_point
        if isinstance(creator, str):
            creator = gym.envs.registration.load_env_creator(creator)
        if num_threads and "num_threads" in inspect.signature(creator).parameters:
            kwargs["num_threads"] = num_threads
    else:
        # Sub-envs are checked once by check_task_env; skip the per-step passive checker.
        kwargs["disable_env_checker"] = True
        kwargs["wrappers"] = [TaskFaultWrapper]
    env = gym.make_vec(
        spec.id, num_envs=num_envs, vectorization_mode=mode, max_episode_steps=horizon, **kwargs
    )
    log.info("sampler backend for %s: %s (%s)", env_id, mode, type(env).__name__)
    env.metarl_backend = mode
    return env


def draw_randomness(
    policy: MLPPolicy,
    num_tasks: int,
    episodes_per_task: int,
    horizon: int,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[np.ndarray, Tensor]:
    """The reset seeds [N·E] (from ``rng``) and action noise [T, N, E, ...] (from ``generator``)
    of one sampling call, drawn before any env runs."""
    seeds = rng.integers(0, 2**31 - 1, size=num_tasks * episodes_per_task)
    return seeds, policy.noise((horizon, num_tasks, episodes_per_task), generator)


@contextlib.contextmanager
def policy_threads(env: gym.vector.VectorEnv) -> Iterator[None]:
    """Run the policy on one torch thread while ``env`` is an engine that steps on all cores.

    Between two physics calls the policy's forward pass is small, and idle torch worker
    threads would compete for the cores the engine's threads need.
    """
    if getattr(env, "num_threads", 1) < 2:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Sampler:
    """Collects ``episodes_per_task`` episodes for each of ``num_tasks`` tasks per call."""

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        horizon: int,
        backend: str = "auto",
        env_kwargs: dict[str, Any] | None = None,
        num_threads: int = 0,
        rescale_actions: bool = True,
    ) -> None:
        self.env_id = env_id
        self.num_tasks, self.episodes_per_task, self.horizon = num_tasks, episodes_per_task, horizon
        self.env = make_vector_env(
            env_id, num_tasks * episodes_per_task, horizon, backend, num_threads, **(env_kwargs or {})
        )
        self.backend = self.env.metarl_backend
        self.obs_dim = int(np.prod(self.env.single_observation_space.shape))
        space = self.env.single_action_space
        #: Discrete action spaces get a categorical policy with ``act_dim`` = the number of actions.
        self.discrete = isinstance(space, gym.spaces.Discrete)
        self.act_dim = int(space.n) if self.discrete else int(np.prod(space.shape))
        self._act_start = int(space.start) if self.discrete else 0
        # Policy actions live in [-1, 1]^d and are mapped affinely onto a bounded Box.
        self._act_scale, self._act_offset = 1.0, 0.0
        space = self.env.single_action_space
        if rescale_actions and isinstance(space, gym.spaces.Box) and space.is_bounded():
            low, high = space.low.astype(np.float64), space.high.astype(np.float64)
            self._act_scale, self._act_offset = (high - low) / 2.0, (high + low) / 2.0
        self._tasks: list[Any] | None = None
        self._task_source = task_api(self.env, env_id, **(env_kwargs or {}))

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        """Draw ``n`` tasks from the family's distribution."""
        return self._task_source.sample_tasks(n, rng)

    def set_tasks(self, tasks: list[Any]) -> None:
        """Give every episode slot of task ``i`` the task ``tasks[i]``."""
        if len(tasks) != self.num_tasks:
            raise ValueError(f"sampler expects {self.num_tasks} tasks, got {len(tasks)}")
        if self._tasks is not None and self._tasks == list(tasks):
            return
        set_tasks(self.env, [t for t in tasks for _ in range(self.episodes_per_task)])
        self._tasks = list(tasks)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Policy actions as the env receives them: Box actions [..., act_dim] mapped onto the
        bounds (the env clips), discrete action indices offset by the space's ``start``."""
        if self.discrete:
            return np.asarray(actions, dtype=np.int64) + self._act_start
        return self._act_offset + self._act_scale * np.asarray(actions, dtype=np.float64)

    def sample(
        self,
        policy: MLPPolicy,
        params: Params,
        rng: np.random.Generator,
        generator: torch.Generator,
        per_task_params: bool = False,
    ) -> Episodes:
        """Run one episode in every sub-env with π_params.

        Every sub-env is reset with its own seed drawn from ``rng``; ``generator`` draws the
        action noise of every sub-env and step up front. With ``per_task_params`` every tensor
        of ``params`` has a leading task dimension.
        """
        seeds, noise = draw_randomness(
            policy, self.num_tasks, self.episodes_per_task, self.horizon, rng, generator
        )
        return self.run(policy, params, per_task_params, seeds, noise)

    def run(
        self, policy: MLPPolicy, params: Params, per_task_params: bool, seeds: np.ndarray, noise: Tensor
    ) -> Episodes:
        """The rollout of :meth:`sample` from given reset ``seeds`` [N·E] and action ``noise``
        [T, N, E, ...]: the same seeds and noise give the same episodes, whichever process runs
        them. Entries after a sub-env's episode ended are zero (and masked)."""
        N, E, T = self.num_tasks, self.episodes_per_task, self.horizon
        obs_buf = torch.zeros(T, N, E, self.obs_dim)
        act_buf = torch.zeros(T, N, E, *policy.action_shape, dtype=policy.action_dtype)
        rew_buf = torch.zeros(T, N, E)
        mask_buf = torch.zeros(T, N, E)
        params = {k: v.detach() for k, v in params.items()}
        task_dim = 0 if per_task_params else None
        try:
            obs, _ = self.env.reset(seed=[int(s) for s in seeds])
        except Exception as exc:
            raise self._fault("reset", exc) from exc
        alive = np.ones(N * E, dtype=bool)
        steps = 0
        with policy_threads(self.env), torch.no_grad():
            for t in range(T):
                o = torch.as_tensor(np.asarray(obs, dtype=np.float32)).view(N, E, self.obs_dim)
                actions = policy.act(policy.dist(params, o, task_dim), noise[t])
                try:
                    obs, reward, terminated, truncated, _ = self.env.step(
                        self.env_actions(actions.reshape(N * E, *policy.action_shape).numpy())
                    )
                except Exception as exc:
                    raise self._fault(f"step {t}", exc) from exc
                alive_t = torch.as_tensor(alive, dtype=torch.float32).view(N, E)
                obs_buf[t] = o * alive_t.unsqueeze(-1)
                act_buf[t] = actions * alive_t.view(N, E, *([1] * len(policy.action_shape))).to(actions.dtype)
                rew_buf[t] = torch.as_tensor(np.asarray(reward, dtype=np.float32)).view(N, E) * alive_t
                mask_buf[t] = alive_t
                alive &= ~(np.asarray(terminated) | np.asarray(truncated))
                steps = t + 1
                if not alive.any():
                    break
        return Episodes(obs_buf[:steps], act_buf[:steps], rew_buf[:steps], mask_buf[:steps])

    def _fault(self, where: str, exc: Exception) -> SamplerError:
        """A one-line error for a failure inside the vector env, naming env id and task(s)."""
        if isinstance(exc, (EOFError, BrokenPipeError, ConnectionError)):
            what = f"a vector-env worker process died during {where} ({type(exc).__name__})"
        elif isinstance(exc, EnvFaultError):
            what = f"the env failed during {where}: {exc}"
        else:
            what = f"the env failed during {where}: {type(exc).__name__}: {exc}"
        ids = getattr(exc, "ids", None)  # mujoco.batch names the failed simulations
        tasks = self._tasks or []
        if ids is not None and tasks:
            named = sorted({repr(tasks[int(i) // self.episodes_per_task]) for i in ids})
            what += f" (task {', '.join(named[:3])})"
        elif "(task " not in what and tasks:
            what += f" (tasks of this batch: {', '.join(repr(t) for t in tasks[:2])}, ...)"
        return SamplerError(f"{self.env_id}: {what}")

    def close(self) -> None:
        try:
            self.env.close()
        except Exception as exc:  # a dead worker must not hide the error that killed it
            log.warning("closing the vector env failed: %s", exc)
