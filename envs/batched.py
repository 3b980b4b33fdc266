"""The batched MuJoCo engine: every sub-env of a vector env in one ``mujoco.batch.Batch``.

:class:`MujocoBatchVectorEnv` is the fast twin of a single Gymnasium MuJoCo task env. One
``Batch.step(nstep=frame_skip)`` call advances all simulations on ``num_threads`` threads in C;
observations, rewards and flags are computed for all sub-envs at once in NumPy, with the same
reward and health functions the single env calls. It follows the single env (wrapped in
``TimeLimit``, inside ``SyncVectorEnv``) exactly: the same reset noise from the same per-sub-env
seeds, the same clipping, reward and time limit, and Gymnasium's ``NEXT_STEP`` autoreset (kept by
:class:`~metarl_envs.base.TaskVectorEnv`). The tests compare the two step by step.

A family's twin lives beside its single env (``half_cheetah.py``, ``ant.py``, ``rand_params.py``):
it subclasses this engine and says how its observation, reward and termination are computed in
batch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from metarl_envs.base import TaskVectorEnv

MJ_STAGE_NONE = 0


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class MujocoBatchVectorEnv(TaskVectorEnv):
    """``num_envs`` copies of ``single_env_cls``, simulated together by ``mujoco.batch``.

    The single env supplies the model, spaces, frame skip, initial state and ``reset_noise_scale``.
    """

    single_env_cls: type
    persistent = False
    #: Gymnasium's hopper and walker draw the initial qvel noise uniformly; the others, normally.
    uniform_qvel_noise = False

    def __init__(
        self,
        num_envs: int,
        max_episode_steps: int | None = None,
        num_threads: int | None = None,
        **env_kwargs: Any,
    ) -> None:
        # mujoco.batch is new in MuJoCo 3.17; imported here so the single envs run on older ones.
        from mujoco.batch import Batch

        ref = self.single_env_cls(**env_kwargs)
        self._setup(ref, num_envs, max_episode_steps)
        self.num_threads = num_threads or usable_cores()
        self.frame_skip = ref.frame_skip
        self.dt = ref.dt
        self._noise = ref.reset_noise_scale
        self._init_qpos, self._init_qvel = ref.init_qpos.copy(), ref.init_qvel.copy()
        self._low, self._high = ref.action_space.low, ref.action_space.high

        self.batch = Batch(ref.model, num_envs, nthread=self.num_threads, persistent=self.persistent)
        self.qpos = self.batch.bind("qpos")
        self.qvel = self.batch.bind("qvel")
        self.ctrl = self.batch.bind("ctrl")
        self._bind_fields()
        self.set_tasks(self._tasks)

    def _validate_tasks(self, tasks: list[Any]) -> None:
        for task in tasks:
            self.reference.set_task(task)  # the single env's checks and messages

    # --- what a family defines ------------------------------------------------------------------
    def _bind_fields(self) -> None:
        """Bind the further MjData fields the family reads (``self.batch.bind``)."""

    def _before_step(self) -> np.ndarray:
        """What the reward needs from the state before the step: by default the root's x."""
        return self.qpos[:, 0].copy()

    def _reward(self, actions: np.ndarray, before: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _terminated(self) -> np.ndarray:
        return np.zeros(self.num_envs, dtype=bool)

    # --- the engine -----------------------------------------------------------------------------
    def _actions(self, actions: Any) -> np.ndarray:
        return np.clip(np.asarray(actions, dtype=np.float64), self._low, self._high)

    def _reset_ids(self, ids: np.ndarray) -> None:
        """mj_resetData, then the single env's reset noise drawn from each sub-env's generator."""
        if ids.size == 0:
            return
        self.batch.reset(ids, stage=MJ_STAGE_NONE)
        nq, nv = self._init_qpos.size, self._init_qvel.size
        for i in ids:
            rng = self._rngs[i]
            self.qpos[i] = self._init_qpos + rng.uniform(-self._noise, self._noise, size=nq)
            if self.uniform_qvel_noise:
                self.qvel[i] = self._init_qvel + rng.uniform(-self._noise, self._noise, size=nv)
            else:
                self.qvel[i] = self._init_qvel + self._noise * rng.standard_normal(nv)
        self.batch.forward(ids)

    def _advance(self, actions: np.ndarray, restart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        before = self._before_step()
        self.ctrl[:] = actions
        self.batch.step(nstep=self.frame_skip)
        self._reset_ids(np.flatnonzero(restart))  # their step is discarded
        return self._reward(actions, before), self._terminated()

    def close_extras(self, **kwargs: Any) -> None:
        self.reference.close()
