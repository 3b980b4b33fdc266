"""Half-cheetah task families (Finn et al. 2017, section 5.3) on Gymnasium's MuJoCo v5 model.

* ``HalfCheetahVel``: run at a goal velocity ~ U[0, 2];
  reward = -|v_x - goal| - 0.05 ||a||^2.
* ``HalfCheetahDir``: run forward (+1) or backward (-1), each with probability 1/2;
  reward = direction * v_x - 0.05 ||a||^2.

Both reuse Gymnasium's ``HalfCheetahEnv`` (v5) for the model, the 17-dimensional observation
(positions without the root x, then velocities), the reset noise and ``v_x`` (the root's x
displacement over one env step divided by ``dt``). Actions are clipped to the action space
before they are applied and before the control cost, as in the paper's rllab environments.
The horizon (200) comes from the ``TimeLimit`` added by ``gymnasium.make``.

The reward functions below work on one step or on a batch of sub-envs alike; the single envs
and their batched twins (:class:`HalfCheetahVelVectorEnv`, :class:`HalfCheetahDirVectorEnv`,
on :class:`~metarl_envs.batched.MujocoBatchVectorEnv`) both call them.
"""

from __future__ import annotations

import warnings
from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from metarl_envs.base import (
    DirectionTask,
    VelocityTask,
    check_n,
    control_cost,
    init_kwargs,
    refuse_forward_reward_weight,
)
from metarl_envs.batched import MujocoBatchVectorEnv, MujocoTwin
from metarl_envs.warp import WarpVectorEnv

CTRL_COST_WEIGHT = 0.05


def velocity_reward(x_velocity: np.ndarray, goal_velocity: np.ndarray) -> np.ndarray:
    """HalfCheetahVel's task term: ``-|v_x - goal|``."""
    return -abs(x_velocity - goal_velocity)


def direction_reward(x_velocity: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """HalfCheetahDir's task term: ``direction * v_x``."""
    return direction * x_velocity


def half_cheetah_reward(task_reward: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The reward of both families, ``task_reward - 0.05 ||a||^2`` (``actions`` clipped, one row
    per sub-env in a batch), and its terms for ``info``."""
    ctrl_cost = control_cost(actions, CTRL_COST_WEIGHT)
    return task_reward - ctrl_cost, {"reward_task": task_reward, "reward_ctrl": -ctrl_cost}


def _mujoco_warning(message: str) -> None:
    # Gymnasium's half_cheetah.xml uses `settotalmass`, which MuJoCo >= 3.4 flags as deprecated
    # on every model load (hundreds of lines per vector env). It still applies; drop the notice.
    if "settotalmass" not in message:
        warnings.warn(f"MuJoCo: {message.strip()}", RuntimeWarning, stacklevel=2)


if mujoco.get_mju_user_warning() is None:
    mujoco.set_mju_user_warning(_mujoco_warning)


class _HalfCheetahTaskEnv(HalfCheetahEnv):
    """Shared step for the half-cheetah families; subclasses define the task and its reward."""

    _task: Any

    def __init__(self, task: Any = None, **kwargs: Any) -> None:
        refuse_forward_reward_weight(type(self).__name__, kwargs)
        super().__init__(ctrl_cost_weight=CTRL_COST_WEIGHT, **kwargs)
        #: Scale of the reset noise (Gymnasium's argument), which the batched twin draws too.
        settings = init_kwargs(HalfCheetahEnv, kwargs)
        self.reset_noise_scale: float = settings["reset_noise_scale"]
        #: The first qpos entry observed (Gymnasium's argument; 1 leaves out the root's x), which
        #: the batched twin observes from too.
        self.observed_qpos_start: int = 1 if settings["exclude_current_positions_from_observation"] else 0
        self.set_task(task if task is not None else self.default_task)

    default_task: Any = None

    def get_task(self) -> Any:
        return self._task

    def task_reward(self, x_velocity: float) -> float:
        raise NotImplementedError

    def step(self, action):
        action = np.clip(action, self.action_space.low, self.action_space.high)
        x_before = self.data.qpos[0]
        self.do_simulation(action, self.frame_skip)
        x_velocity = (self.data.qpos[0] - x_before) / self.dt
        reward, terms = half_cheetah_reward(self.task_reward(x_velocity), action)
        info = {"x_position": self.data.qpos[0], "x_velocity": x_velocity, **terms}
        return self._get_obs(), reward, False, False, info


class HalfCheetahVelEnv(_HalfCheetahTaskEnv):
    """Half-cheetah that must run at a goal forward velocity drawn from U[0, 2]."""

    task_distribution = "goal velocity ~ U[0, 2]; reward = -|v_x - goal| - 0.05||a||^2"
    default_task = VelocityTask(velocity=1.0)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[VelocityTask]:
        return [VelocityTask(velocity=float(v)) for v in rng.uniform(0.0, 2.0, size=check_n(n))]

    def set_task(self, task: VelocityTask) -> None:
        if not isinstance(task, VelocityTask):
            raise TypeError(f"HalfCheetahVel expects a VelocityTask, got {task!r}")
        self._task = task

    def task_reward(self, x_velocity: float) -> float:
        return velocity_reward(x_velocity, self._task.velocity)


class HalfCheetahDirEnv(_HalfCheetahTaskEnv):
    """Half-cheetah that must run forward or backward, each with probability 1/2."""

    task_distribution = "direction ~ {-1, +1} (p = 1/2); reward = dir * v_x - 0.05||a||^2"
    default_task = DirectionTask(direction=1)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[DirectionTask]:
        return [DirectionTask(direction=int(d)) for d in rng.choice([-1, 1], size=check_n(n))]

    def set_task(self, task: DirectionTask) -> None:
        if not isinstance(task, DirectionTask) or task.direction not in (-1, 1):
            raise TypeError(f"HalfCheetahDir expects DirectionTask(direction=±1), got {task!r}")
        self._task = task

    def task_reward(self, x_velocity: float) -> float:
        return direction_reward(x_velocity, self._task.direction)


# --- the vectorized twins --------------------------------------------------------------------
class _HalfCheetahTwin(MujocoTwin):
    """Half-cheetah observation (qpos, by default without the root's x, then qvel) and reward,
    batched, on either engine."""

    def _observe(self) -> Any:
        return self._concat([self.qpos[:, self.reference.observed_qpos_start :], self.qvel])

    def _reward(self, actions: Any, x_before: Any) -> Any:
        x_velocity = (self.qpos[:, 0] - x_before) / self.dt
        return half_cheetah_reward(self._task_reward(x_velocity), actions)[0]

    def _task_reward(self, x_velocity: Any) -> Any:
        raise NotImplementedError


class HalfCheetahVelTwin(_HalfCheetahTwin):
    """The vectorized :class:`HalfCheetahVelEnv`, on any engine."""

    single_env_cls = HalfCheetahVelEnv

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._goal_velocity = self._task_array([t.velocity for t in tasks])

    def _task_reward(self, x_velocity: Any) -> Any:
        return velocity_reward(x_velocity, self._goal_velocity)


class HalfCheetahDirTwin(_HalfCheetahTwin):
    """The vectorized :class:`HalfCheetahDirEnv`, on any engine."""

    single_env_cls = HalfCheetahDirEnv

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._direction = self._task_array([t.direction for t in tasks])

    def _task_reward(self, x_velocity: Any) -> Any:
        return direction_reward(x_velocity, self._direction)


class HalfCheetahVelVectorEnv(HalfCheetahVelTwin, MujocoBatchVectorEnv):
    """Batched twin of :class:`HalfCheetahVelEnv` (MuJoCo's C engine, ``mujoco.batch``)."""


class HalfCheetahDirVectorEnv(HalfCheetahDirTwin, MujocoBatchVectorEnv):
    """Batched twin of :class:`HalfCheetahDirEnv` (MuJoCo's C engine, ``mujoco.batch``)."""


class HalfCheetahVelWarpVectorEnv(HalfCheetahVelTwin, WarpVectorEnv):
    """:class:`HalfCheetahVelEnv` on MuJoCo Warp (GPU, or Warp's CPU device)."""


class HalfCheetahDirWarpVectorEnv(HalfCheetahDirTwin, WarpVectorEnv):
    """:class:`HalfCheetahDirEnv` on MuJoCo Warp (GPU, or Warp's CPU device)."""
