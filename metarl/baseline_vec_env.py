"""The PPO baselines' envs in one batched engine (``ppo.vec_env: batched``).

:class:`TaskBatchVecEnv` is Stable-Baselines3's ``VecEnv`` over a family's Gymnasium vector env
(its batched MuJoCo engine where it has one, else ``SyncVectorEnv``): every PPO env is a sub-env
of one engine, stepped in one call, and each draws a new task from its own stream when its
episode ends, as :class:`~metarl.reference_methods.RandomTaskEachReset` does for one env. A
sub-env's episodes are those of the single env given the same task, reset seed and actions (the
batched engine is bit-identical to the single envs; a test checks the twin).

Gymnasium's vector envs reset a finished sub-env on the step after (``NEXT_STEP`` autoreset);
SB3 expects the reset observation in the same step, with the last one in
``info["terminal_observation"]``. So a finished sub-env is given its next task and reset at
once (``reset_mask``), before the step returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from metarl.tasks import set_tasks


class TaskBatchVecEnv(VecEnv):
    """SB3 ``VecEnv`` over ``vector_env``, a new task per episode for each sub-env.

    ``reference`` is a single env of the family (it samples the tasks; its observation and
    action spaces are the ones PPO sees, so it carries the oracle's task wrapper and the unit
    action rescaling); ``task_seeds`` seed one task stream per sub-env; ``observe(obs, tasks)``
    turns the engine's observations and the sub-envs' tasks into what PPO observes;
    ``to_env(actions)`` turns PPO's actions into the engine's.
    """

    def __init__(
        self,
        vector_env: gym.vector.VectorEnv,
        reference: gym.Env,
        task_seeds: list[int],
        observe: Callable[[np.ndarray, list[Any]], np.ndarray],
        to_env: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        if len(task_seeds) != vector_env.num_envs:
            raise ValueError(f"got {len(task_seeds)} task seeds for {vector_env.num_envs} sub-envs")
        self.vector_env = vector_env
        self.reference = reference
        self._observe = observe
        self._to_env = to_env
        self._task_rngs = [np.random.default_rng(s) for s in task_seeds]
        self._tasks: list[Any] = [None] * vector_env.num_envs
        self._actions: np.ndarray | None = None
        super().__init__(vector_env.num_envs, reference.observation_space, reference.action_space)

    def _next_task(self, i: int) -> Any:
        self._tasks[i] = self.reference.unwrapped.sample_tasks(1, self._task_rngs[i])[0]
        return self._tasks[i]

    def reset(self) -> np.ndarray:
        for i in range(self.num_envs):
            self._next_task(i)
        set_tasks(self.vector_env, self._tasks)
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, _ = self.vector_env.reset(seed=seeds)
        self._reset_seeds()
        self._reset_options()
        return self._observe(obs, self._tasks)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, _ = self.vector_env.step(self._to_env(self._actions))
        terminated, truncated = np.asarray(terminated), np.asarray(truncated)
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        seen = self._observe(obs, self._tasks)
        if done.any():
            for i in np.flatnonzero(done):
                infos[i]["terminal_observation"] = seen[i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                self._next_task(i)
            set_tasks(self.vector_env, self._tasks)
            obs, _ = self.vector_env.reset(options={"reset_mask": done})
            seen = self._observe(obs, self._tasks)
        return seen, np.asarray(reward, dtype=np.float32), done, infos

    def close(self) -> None:
        self.vector_env.close()
        self.reference.close()

    # SB3 asks for attributes of the sub-envs (``render_mode`` when it starts); the sub-envs of a
    # batched engine are not env objects, so the reference env answers for all of them.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.reference, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"the sub-envs of a batched engine have no attribute {attr_name!r} to set")

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any):
        raise AttributeError(f"the sub-envs of a batched engine have no method {method_name!r} to call")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
