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
from metarl_envs.base import TaskVectorEnv, full_flags

MJ_STAGE_NONE = 0


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class MujocoTwin(TaskVectorEnv):
    """What a MuJoCo family's twin computes with, whichever engine simulates it: ``qpos`` and
    ``qvel`` (live, one row per sub-env), the derived fields it reads (:meth:`_field`), and a few
    array operations. :class:`MujocoBatchVectorEnv` implements them in NumPy (float64, on the
    CPU); the MuJoCo Warp engine (:mod:`metarl_envs.warp`) with torch tensors on its device.

    A family's twin logic is a mixin on top of this class (its observation, reward, termination
    and task arrays, written once), combined with each engine in its module.
    """

    single_env_cls: type
    #: Gymnasium's hopper and walker draw the initial qvel noise uniformly; the others, normally.
    uniform_qvel_noise = False
    #: Model fields with one value per sub-env (:meth:`_physics`), for an engine that must know
    #: them up front.
    batched_fields: tuple[str, ...] = ()
    qpos: Any
    qvel: Any
    dt: float

    def _field(self, name: str, width: int) -> Any:
        """The MjData field ``name`` of every sub-env, live, shaped ``[num_envs, rows, width]``."""
        raise NotImplementedError

    def _snapshot(self, x: Any) -> Any:
        """A copy of ``x`` that later steps leave alone."""
        raise NotImplementedError

    def _concat(self, parts: list[Any]) -> Any:
        """``parts`` (one row per sub-env each) side by side."""
        raise NotImplementedError

    def _task_array(self, values: Any) -> Any:
        """Per-sub-env task values as an array of the engine's float type."""
        raise NotImplementedError

    def _physics(self, field: str) -> Any:
        """The model field ``field`` with one writable row per sub-env (random-physics families)."""
        raise NotImplementedError

    def _set_const(self) -> None:
        """Recompute the model constants derived from the fields of :meth:`_physics`."""
        raise NotImplementedError

    # --- what a family defines ------------------------------------------------------------------
    def _bind_fields(self) -> None:
        """Bind the further MjData fields the family reads (with :meth:`_field`)."""

    def _before_step(self) -> Any:
        """What the reward needs from the state before the step: by default the root's x."""
        return self._snapshot(self.qpos[:, 0])

    def _reward(self, actions: Any, before: Any) -> Any:
        raise NotImplementedError

    def _terminated(self) -> Any:
        return full_flags(self.qpos[:, 0], False)

    def _validate_tasks(self, tasks: list[Any]) -> None:
        for task in tasks:
            self.reference.set_task(task)  # the single env's checks and messages

    def _reset_state(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The single env's reset: the initial qpos and qvel plus noise drawn from sub-env
        ``i``'s generator (float64)."""
        rng, noise = self._rngs[i], self._noise
        nq, nv = self._init_qpos.size, self._init_qvel.size
        qpos = self._init_qpos + rng.uniform(-noise, noise, size=nq)
        if self.uniform_qvel_noise:
            qvel = self._init_qvel + rng.uniform(-noise, noise, size=nv)
        else:
            qvel = self._init_qvel + noise * rng.standard_normal(nv)
        return qpos, qvel

    def _take_reference(self, ref: Any) -> None:
        """What the engines read from the single env ``ref``."""
        self.frame_skip = ref.frame_skip
        self.dt = ref.dt
        self._noise = ref.reset_noise_scale
        self._init_qpos, self._init_qvel = ref.init_qpos.copy(), ref.init_qvel.copy()
        self._low, self._high = ref.action_space.low, ref.action_space.high

    def close_extras(self, **kwargs: Any) -> None:
        self.reference.close()


class MujocoBatchVectorEnv(MujocoTwin):
    """``num_envs`` copies of ``single_env_cls``, simulated together by ``mujoco.batch``.

    The single env supplies the model, spaces, frame skip, initial state and ``reset_noise_scale``.
    """

    persistent = False

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
        self._take_reference(ref)

        self.batch = Batch(ref.model, num_envs, nthread=self.num_threads, persistent=self.persistent)
        self.qpos = self.batch.bind("qpos")
        self.qvel = self.batch.bind("qvel")
        self.ctrl = self.batch.bind("ctrl")
        self._bind_fields()
        self.set_tasks(self._tasks)

    # --- the arrays of the twins: NumPy, float64 -------------------------------------------------
    def _field(self, name: str, width: int) -> np.ndarray:
        return self.batch.bind(name).reshape(self.num_envs, -1, width)

    def _snapshot(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def _concat(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts, axis=1)

    def _task_array(self, values: Any) -> np.ndarray:
        return np.array(values, dtype=np.float64)

    def _physics(self, field: str) -> np.ndarray:
        return self.batch.expand(field)

    def _set_const(self) -> None:
        self.batch.set_const()

    # --- the engine -----------------------------------------------------------------------------
    def _actions(self, actions: Any) -> np.ndarray:
        return np.clip(np.asarray(actions, dtype=np.float64), self._low, self._high)

    def _reset_ids(self, ids: np.ndarray) -> None:
        """mj_resetData, then the single env's reset noise drawn from each sub-env's generator."""
        if ids.size == 0:
            return
        self.batch.reset(ids, stage=MJ_STAGE_NONE)
        for i in ids:
            self.qpos[i], self.qvel[i] = self._reset_state(i)
        self.batch.forward(ids)

    def _advance(self, actions: np.ndarray, restart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        before = self._before_step()
        self.ctrl[:] = actions
        self.batch.step(nstep=self.frame_skip)
        self._reset_ids(np.flatnonzero(restart))  # their step is discarded
        return self._reward(actions, before), self._terminated()
