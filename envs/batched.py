"""Batched MuJoCo task families: every sub-env of a vector env in one ``mujoco.batch.Batch``.

:class:`MujocoBatchVectorEnv` is the fast twin of a single Gymnasium MuJoCo task env. One
``Batch.step(nstep=frame_skip)`` call advances all simulations on ``num_threads`` threads in C;
observations, rewards and flags are computed for all sub-envs at once in NumPy. It follows the
single env (wrapped in ``TimeLimit``, inside ``SyncVectorEnv``) exactly: the same reset noise
from the same per-sub-env seeds, the same clipping, reward and time limit, and Gymnasium's
``NEXT_STEP`` autoreset. The tests compare the two step by step.

A family subclasses it and says how its reward and observation are computed in batch.
"""

from __future__ import annotations

import os
from typing import Any

import mujoco
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from metarl_envs.ant import AntDirEnv, AntGoalEnv, AntVelEnv
from metarl_envs.base import TaskVectorEnv
from metarl_envs.half_cheetah import HalfCheetahDirEnv, HalfCheetahVelEnv
from metarl_envs.rand_params import (
    FIELDS,
    HalfCheetahRandParamsEnv,
    HopperRandParamsEnv,
    Walker2dRandParamsEnv,
)
from mujoco.batch import Batch

MJ_STAGE_NONE = 0


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class MujocoBatchVectorEnv(TaskVectorEnv):
    """``num_envs`` copies of ``single_env_cls``, simulated together by ``mujoco.batch``."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}
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
        # The reference env supplies the model, spaces, frame skip, initial state and noise scale.
        self.reference = ref = self.single_env_cls(**env_kwargs)
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.num_threads = num_threads or usable_cores()
        self.single_observation_space = ref.observation_space
        self.single_action_space = ref.action_space
        self.observation_space = batch_space(ref.observation_space, num_envs)
        self.action_space = batch_space(ref.action_space, num_envs)
        self.frame_skip = ref.frame_skip
        self.dt = ref.dt
        self._noise = ref._reset_noise_scale
        self._init_qpos, self._init_qvel = ref.init_qpos.copy(), ref.init_qvel.copy()
        self._low, self._high = ref.action_space.low, ref.action_space.high

        self.batch = Batch(ref.model, num_envs, nthread=self.num_threads, persistent=self.persistent)
        self.qpos = self.batch.bind("qpos")
        self.qvel = self.batch.bind("qvel")
        self.ctrl = self.batch.bind("ctrl")
        self._bind_fields()
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._tasks: list[Any] = [ref.get_task()] * num_envs
        self.set_tasks(self._tasks)

    # --- the task protocol, per sub-env ---------------------------------------------------------
    def _validate_tasks(self, tasks: list[Any]) -> None:
        for task in tasks:
            self.reference.set_task(task)  # the single env's checks and messages

    # --- what a family defines ------------------------------------------------------------------
    def _bind_fields(self) -> None:
        """Bind the further MjData fields the family reads (``self.batch.bind``)."""

    def _before_step(self) -> np.ndarray:
        """What the reward needs from the state before the step: by default the root's x."""
        return self.qpos[:, 0].copy()

    def _observe(self) -> np.ndarray:
        raise NotImplementedError

    def _reward(self, actions: np.ndarray, before: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _terminated(self) -> np.ndarray:
        return np.zeros(self.num_envs, dtype=bool)

    # --- Gymnasium's VectorEnv API --------------------------------------------------------------
    def _reset_ids(self, ids: np.ndarray) -> None:
        """mj_resetData, then the reference env's reset noise drawn from each sub-env's rng."""
        if ids.size == 0:
            return
        self.batch.reset(ids, stage=MJ_STAGE_NONE)
        nq, nv = self._init_qpos.size, self._init_qvel.size
        for i in ids:
            rng = self._rngs[i]
            if rng is None:
                rng, _ = seeding.np_random()
                self._rngs[i] = rng
            self.qpos[i] = self._init_qpos + rng.uniform(-self._noise, self._noise, size=nq)
            if self.uniform_qvel_noise:
                self.qvel[i] = self._init_qvel + rng.uniform(-self._noise, self._noise, size=nv)
            else:
                self.qvel[i] = self._init_qvel + self._noise * rng.standard_normal(nv)
        self.batch.forward(ids)
        self._elapsed[ids] = 0
        self._autoreset[ids] = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        seeds = self.per_env_seeds(seed)
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
        for i in np.flatnonzero(mask):
            if seeds[i] is not None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        self._reset_ids(np.flatnonzero(mask))
        return self._observe(), {}

    def step(self, actions):
        actions = np.clip(np.asarray(actions, dtype=np.float64), self._low, self._high)
        restart = np.flatnonzero(self._autoreset)
        before = self._before_step()
        self.ctrl[:] = actions
        self.batch.step(nstep=self.frame_skip)
        # Sub-envs whose episode ended last step are reset instead (their step is discarded).
        self._reset_ids(restart)
        reward = self._reward(actions, before)
        terminated = self._terminated()
        self._elapsed += 1
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = self._elapsed >= self.max_episode_steps
        reward[restart] = 0.0
        terminated[restart] = False
        truncated[restart] = False
        self._elapsed[restart] = 0
        self._autoreset = terminated | truncated
        return self._observe(), reward, terminated, truncated, {}

    def close_extras(self, **kwargs: Any) -> None:
        self.reference.close()


class _HalfCheetahBatch(MujocoBatchVectorEnv):
    """Half-cheetah observation (qpos without root x, then qvel) and control cost, batched."""

    def _observe(self) -> np.ndarray:
        return np.concatenate([self.qpos[:, 1:], self.qvel], axis=1)

    def _reward(self, actions: np.ndarray, x_before: np.ndarray) -> np.ndarray:
        x_velocity = (self.qpos[:, 0] - x_before) / self.dt
        ctrl_cost = self.reference._ctrl_cost_weight * np.sum(np.square(actions), axis=1)
        return self._task_reward(x_velocity) - ctrl_cost

    def _task_reward(self, x_velocity: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class HalfCheetahVelVectorEnv(_HalfCheetahBatch):
    """Batched twin of :class:`~metarl_envs.half_cheetah.HalfCheetahVelEnv`."""

    single_env_cls = HalfCheetahVelEnv

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._goal_velocity = np.array([t.velocity for t in tasks], dtype=np.float64)

    def _task_reward(self, x_velocity: np.ndarray) -> np.ndarray:
        return -np.abs(x_velocity - self._goal_velocity)


class HalfCheetahDirVectorEnv(_HalfCheetahBatch):
    """Batched twin of :class:`~metarl_envs.half_cheetah.HalfCheetahDirEnv`."""

    single_env_cls = HalfCheetahDirEnv

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._direction = np.array([t.direction for t in tasks], dtype=np.float64)

    def _task_reward(self, x_velocity: np.ndarray) -> np.ndarray:
        return self._direction * x_velocity


class _AntBatch(MujocoBatchVectorEnv):
    """Ant observation (``qpos[2:]``, ``qvel``, clipped ``cfrc_ext``), costs and health, batched.

    ``xpos`` and ``cfrc_ext`` are derived fields that ``mujoco.batch`` copies out after every
    call, from the last substep, as ``mj_step`` leaves them in a single ``MjData``.
    """

    def _bind_fields(self) -> None:
        ref = self.reference
        body = ref._main_body
        self._body = (
            body if isinstance(body, int) else mujoco.mj_name2id(ref.model, mujoco.mjtObj.mjOBJ_BODY, body)
        )
        self.xpos = self.batch.bind("xpos").reshape(self.num_envs, -1, 3)
        self.cfrc_ext = self.batch.bind("cfrc_ext").reshape(self.num_envs, -1, 6)
        self._force_low, self._force_high = ref._contact_force_range
        self._z_low, self._z_high = ref._healthy_z_range

    def _before_step(self) -> np.ndarray:
        return self.xpos[:, self._body, :2].copy()

    def _contact_forces(self) -> np.ndarray:
        return np.clip(self.cfrc_ext, self._force_low, self._force_high)

    def _observe(self) -> np.ndarray:
        forces = self._contact_forces()[:, 1:].reshape(self.num_envs, -1)
        return np.concatenate([self.qpos[:, 2:], self.qvel, forces], axis=1)

    def _reward(self, actions: np.ndarray, before: np.ndarray) -> np.ndarray:
        ref = self.reference
        xy = self.xpos[:, self._body, :2]
        x_velocity = (xy[:, 0] - before[:, 0]) / self.dt
        ctrl_cost = ref._ctrl_cost_weight * np.sum(np.square(actions), axis=1)
        contact_cost = ref._contact_cost_weight * np.sum(np.square(self._contact_forces()), axis=(1, 2))
        return self._task_reward(x_velocity, xy) + ref.survive_reward - ctrl_cost - contact_cost

    def _terminated(self) -> np.ndarray:
        finite = np.isfinite(self.qpos).all(axis=1) & np.isfinite(self.qvel).all(axis=1)
        z = self.qpos[:, 2]
        return ~(finite & (self._z_low <= z) & (z <= self._z_high))

    def _task_reward(self, x_velocity: np.ndarray, xy: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class AntVelVectorEnv(_AntBatch):
    """Batched twin of :class:`~metarl_envs.ant.AntVelEnv`."""

    single_env_cls = AntVelEnv

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._goal_velocity = np.array([t.velocity for t in tasks], dtype=np.float64)

    def _task_reward(self, x_velocity: np.ndarray, xy: np.ndarray) -> np.ndarray:
        return -np.abs(x_velocity - self._goal_velocity) + 1.0


class AntDirVectorEnv(_AntBatch):
    """Batched twin of :class:`~metarl_envs.ant.AntDirEnv`."""

    single_env_cls = AntDirEnv

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._direction = np.array([t.direction for t in tasks], dtype=np.float64)

    def _task_reward(self, x_velocity: np.ndarray, xy: np.ndarray) -> np.ndarray:
        return self._direction * x_velocity


class AntGoalVectorEnv(_AntBatch):
    """Batched twin of :class:`~metarl_envs.ant.AntGoalEnv`."""

    single_env_cls = AntGoalEnv

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._goal = np.array([t.goal for t in tasks], dtype=np.float64).reshape(len(tasks), 2)

    def _task_reward(self, x_velocity: np.ndarray, xy: np.ndarray) -> np.ndarray:
        return -np.abs(xy - self._goal).sum(axis=1) + 4.0


class _RandParamsBatch(MujocoBatchVectorEnv):
    """Per-sub-env physics parameters: ``Batch.expand`` gives each simulation its own masses,
    inertias, damping and friction, and ``set_const`` recomputes the constants derived from them."""

    def _bind_fields(self) -> None:
        self._params = {f: self.batch.expand(f) for f in FIELDS}

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        ref = self.reference
        for f in FIELDS:
            scales = np.stack([ref.multipliers(t)[f] for t in tasks])
            self._params[f][:] = ref.nominal[f] * scales
        self.batch.set_const()

    def _observe(self) -> np.ndarray:
        return np.concatenate([self.qpos[:, 1:], self.qvel], axis=1)

    def _reward(self, actions: np.ndarray, x_before: np.ndarray) -> np.ndarray:
        ref = self.reference
        x_velocity = (self.qpos[:, 0] - x_before) / self.dt
        ctrl_cost = ref._ctrl_cost_weight * np.sum(np.square(actions), axis=1)
        return ref._forward_reward_weight * x_velocity + self._healthy_reward() - ctrl_cost

    def _healthy(self) -> np.ndarray:
        return np.ones(self.num_envs, dtype=bool)

    def _healthy_reward(self) -> np.ndarray | float:
        return 0.0

    def _terminated(self) -> np.ndarray:
        return ~self._healthy()


class HalfCheetahRandParamsVectorEnv(_RandParamsBatch):
    """Batched twin of :class:`~metarl_envs.rand_params.HalfCheetahRandParamsEnv`."""

    single_env_cls = HalfCheetahRandParamsEnv


class _HealthyBatch(_RandParamsBatch):
    """Hopper and walker: clipped velocities in the observation, a bonus while healthy, and
    termination when not."""

    uniform_qvel_noise = True

    def _observe(self) -> np.ndarray:
        return np.concatenate([self.qpos[:, 1:], np.clip(self.qvel, -10.0, 10.0)], axis=1)

    def _healthy_reward(self) -> np.ndarray:
        return self._healthy() * self.reference._healthy_reward

    def _healthy(self) -> np.ndarray:
        ref = self.reference
        z, angle = self.qpos[:, 1], self.qpos[:, 2]
        (z_low, z_high), (a_low, a_high) = ref._healthy_z_range, ref._healthy_angle_range
        return (z_low < z) & (z < z_high) & (a_low < angle) & (angle < a_high)


class HopperRandParamsVectorEnv(_HealthyBatch):
    """Batched twin of :class:`~metarl_envs.rand_params.HopperRandParamsEnv`."""

    single_env_cls = HopperRandParamsEnv

    def _healthy(self) -> np.ndarray:
        low, high = self.reference._healthy_state_range
        state = np.concatenate([self.qpos, self.qvel], axis=1)[:, 2:]
        return super()._healthy() & np.all((low < state) & (state < high), axis=1)


class Walker2dRandParamsVectorEnv(_HealthyBatch):
    """Batched twin of :class:`~metarl_envs.rand_params.Walker2dRandParamsEnv`."""

    single_env_cls = Walker2dRandParamsEnv
