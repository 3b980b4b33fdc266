"""Ant task families (Finn et al. 2017, section 5.3; the goal variant of Rothfuss et al. 2019)
on Gymnasium's MuJoCo Ant v5 model.

* ``AntVel``: run at a goal velocity ~ U[0, 3];
  reward = -|v_x - goal| + 1.0 + 0.05 - 0.005 ||a||^2 - 0.0005 * sum(clip(cfrc_ext, -1, 1)^2).
* ``AntDir``: run forward (+1) or backward (-1), each with probability 1/2;
  reward = direction * v_x + 0.05 - control cost - contact cost.
* ``AntGoal``: walk to a goal position ~ U[-3, 3]^2;
  reward = -||xy - goal||_1 + 4.0 - control cost - contact cost (no survival bonus).

Gymnasium's ``AntEnv`` supplies the model, the 105-dimensional observation (``qpos[2:]``,
``qvel``, then the clipped ``cfrc_ext`` of every body but the world), the reset noise, and
``v_x`` and ``xy`` (the torso's ``xpos`` after the step, as Gymnasium measures them). The episode
terminates when the state is not finite or the torso's height leaves [0.2, 1.0]; the horizon (200)
is the ``TimeLimit`` added by ``gymnasium.make``. Actions are clipped to [-1, 1] before they are
applied and costed.

Contact forces: Gymnasium calls ``mj_rnePostConstraint`` after ``mj_step``, on a ``MjData`` whose
positions and velocities have already been integrated while its contacts have not, which gives
forces that belong to neither state. Here the model carries one force sensor, so MuJoCo computes
``cfrc_ext`` inside each step, from the contacts of the state being stepped. That is the same
quantity as ``mj_forward`` followed by ``mj_rnePostConstraint`` on that state, and it is what the
batched twin gets from ``mujoco.batch``.

The reward and health functions below work on one step or on a batch of sub-envs alike; the
single envs and their batched twins (:class:`AntVelVectorEnv`, :class:`AntDirVectorEnv`,
:class:`AntGoalVectorEnv`, on :class:`~metarl_envs.batched.MujocoBatchVectorEnv`) both call them.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from metarl_envs.base import (
    DirectionTask,
    GoalTask,
    VelocityTask,
    check_n,
    control_cost,
    init_kwargs,
    isfinite,
    refuse_forward_reward_weight,
)
from metarl_envs.batched import MujocoBatchVectorEnv, MujocoTwin
from metarl_envs.warp import WarpVectorEnv

CTRL_COST_WEIGHT = 0.005
CONTACT_COST_WEIGHT = 5e-4
SURVIVE_REWARD = 0.05
PROBE_SITE = "metarl_contact_probe"


def velocity_reward(x_velocity: np.ndarray, goal_velocity: np.ndarray) -> np.ndarray:
    """AntVel's task term: ``-|v_x - goal| + 1``."""
    return -abs(x_velocity - goal_velocity) + 1.0


def direction_reward(x_velocity: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """AntDir's task term: ``direction * v_x``."""
    return direction * x_velocity


def goal_reward(xy: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """AntGoal's task term: ``-||xy - goal||_1 + 4`` (``xy`` and ``goal`` end in the 2 coordinates)."""
    return -abs(xy - goal).sum(axis=-1) + 4.0


def contact_forces(cfrc_ext: np.ndarray, force_range: tuple[float, float]) -> np.ndarray:
    """The external contact forces ``cfrc_ext`` clipped to ``force_range``, as observed and costed."""
    low, high = force_range
    return cfrc_ext.clip(low, high)


def ant_reward(
    task_reward: np.ndarray, actions: np.ndarray, forces: np.ndarray, survive_reward: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """The reward of the ant families, ``task_reward + survive_reward - 0.005 ||a||^2 - 5e-4 ||forces||^2``,
    and its terms for ``info``. ``actions`` are clipped and ``forces`` are the clipped ``cfrc_ext``
    (bodies x 6); a batch adds a leading sub-env axis to both."""
    ctrl_cost = control_cost(actions, CTRL_COST_WEIGHT)
    contact_cost = CONTACT_COST_WEIGHT * (forces * forces).sum(axis=(-2, -1))
    reward = task_reward + survive_reward - ctrl_cost - contact_cost
    return reward, {"reward_task": task_reward, "reward_ctrl": -ctrl_cost, "reward_contact": -contact_cost}


def is_healthy(qpos: np.ndarray, qvel: np.ndarray, healthy_z_range: tuple[float, float]) -> np.ndarray:
    """The ant is healthy while its state is finite and the torso's height ``qpos[2]`` lies in
    ``healthy_z_range`` (bounds included); an unhealthy ant ends its episode."""
    low, high = healthy_z_range
    z = qpos[..., 2]
    return isfinite(qpos).all(axis=-1) & isfinite(qvel).all(axis=-1) & (low <= z) & (z <= high)


def with_contact_force_sensor(path: str) -> mujoco.MjModel:
    """The model at ``path`` plus one force sensor on the torso, so that every ``mj_step``
    computes ``cfrc_ext``. Sensors read the state; they change nothing in the dynamics."""
    spec = mujoco.MjSpec.from_file(path)
    spec.body("torso").add_site(name=PROBE_SITE)
    spec.add_sensor(type=mujoco.mjtSensor.mjSENS_FORCE, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=PROBE_SITE)
    return spec.compile()


class _AntTaskEnv(AntEnv):
    """Shared model, step and costs of the ant families; subclasses define task and reward.

    Gymnasium's ``healthy_reward`` sets the survival bonus, paid on every step, the last one
    included, as in the authors' envs (default: the family's, ``survive_reward``; PEARL and ProMP
    give ant-dir 1.0). The reward's other weights are the family's own, and an unhealthy ant
    always ends its episode, so ``forward_reward_weight`` and ``terminate_when_unhealthy=False``
    are refused rather than ignored.
    """

    _task: Any
    default_task: Any = None
    #: The family's survival bonus per step, unless ``healthy_reward`` is given.
    survive_reward: float = SURVIVE_REWARD

    def __init__(self, task: Any = None, **kwargs: Any) -> None:
        name = type(self).__name__
        refuse_forward_reward_weight(name, kwargs)
        if not kwargs.get("terminate_when_unhealthy", True):
            raise ValueError(
                f"{name} ends an episode when the ant is unhealthy, as the paper's does; "
                "terminate_when_unhealthy=False is not supported"
            )
        super().__init__(ctrl_cost_weight=CTRL_COST_WEIGHT, contact_cost_weight=CONTACT_COST_WEIGHT, **kwargs)
        # Gymnasium's arguments that the step and the batched twin use.
        settings = init_kwargs(AntEnv, kwargs)
        if "healthy_reward" in kwargs:
            bonus = kwargs["healthy_reward"]
            if isinstance(bonus, bool) or not isinstance(bonus, (int, float)) or not np.isfinite(bonus):
                raise ValueError(f"{name}: healthy_reward must be a finite number, got {bonus!r}")
            self.survive_reward = float(bonus)
        #: Id of the body whose position is measured (the torso by default).
        self.main_body: int = self.model.body(settings["main_body"]).id
        self.healthy_z_range: tuple[float, float] = settings["healthy_z_range"]
        self.contact_force_range: tuple[float, float] = settings["contact_force_range"]
        self.reset_noise_scale: float = settings["reset_noise_scale"]
        #: The observation's layout (Gymnasium's arguments), which the batched twin builds too:
        #: the first qpos entry observed (2 leaves out the torso's x and y) and whether the
        #: clipped contact forces follow qvel.
        self.observed_qpos_start: int = 2 if settings["exclude_current_positions_from_observation"] else 0
        self.observes_contact_forces: bool = settings["include_cfrc_ext_in_observation"]
        self.set_task(task if task is not None else self.default_task)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model = with_contact_force_sensor(self.fullpath)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def _step_mujoco_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=n_frames)

    def get_task(self) -> Any:
        return self._task

    def task_reward(self, x_velocity: float, xy: np.ndarray) -> float:
        raise NotImplementedError

    def step(self, action):
        action = np.clip(action, self.action_space.low, self.action_space.high)
        xy_before = self.data.body(self.main_body).xpos[:2].copy()
        self.do_simulation(action, self.frame_skip)
        xy = self.data.body(self.main_body).xpos[:2].copy()
        x_velocity = (xy[0] - xy_before[0]) / self.dt
        forces = contact_forces(self.data.cfrc_ext, self.contact_force_range)
        reward, terms = ant_reward(self.task_reward(x_velocity, xy), action, forces, self.survive_reward)
        healthy = bool(is_healthy(self.data.qpos, self.data.qvel, self.healthy_z_range))
        info = {
            "x_position": self.data.qpos[0],
            "y_position": self.data.qpos[1],
            "x_velocity": x_velocity,
            **terms,
        }
        return self._get_obs(), reward, not healthy, False, info


class AntVelEnv(_AntTaskEnv):
    """Ant that must run forward at a goal velocity drawn from U[0, 3]."""

    task_distribution = (
        "goal velocity ~ U[0, 3]; reward = -|v_x - goal| + 1 + survive (0.05) - ctrl - contact"
    )
    default_task = VelocityTask(velocity=1.5)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[VelocityTask]:
        return [VelocityTask(velocity=float(v)) for v in rng.uniform(0.0, 3.0, size=check_n(n))]

    def set_task(self, task: VelocityTask) -> None:
        if not isinstance(task, VelocityTask):
            raise TypeError(f"AntVel expects a VelocityTask, got {task!r}")
        self._task = task

    def task_reward(self, x_velocity: float, xy: np.ndarray) -> float:
        return velocity_reward(x_velocity, self._task.velocity)


class AntDirEnv(_AntTaskEnv):
    """Ant that must run forward or backward, each with probability 1/2."""

    task_distribution = "direction ~ {-1, +1} (p = 1/2); reward = dir * v_x + survive (0.05) - ctrl - contact"
    default_task = DirectionTask(direction=1)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[DirectionTask]:
        return [DirectionTask(direction=int(d)) for d in rng.choice([-1, 1], size=check_n(n))]

    def set_task(self, task: DirectionTask) -> None:
        if not isinstance(task, DirectionTask) or task.direction not in (-1, 1):
            raise TypeError(f"AntDir expects DirectionTask(direction=±1), got {task!r}")
        self._task = task

    def task_reward(self, x_velocity: float, xy: np.ndarray) -> float:
        return direction_reward(x_velocity, self._task.direction)


class AntGoalEnv(_AntTaskEnv):
    """Ant that must walk to a goal position drawn from U[-3, 3]^2."""

    task_distribution = "goal ~ U[-3, 3]^2; reward = -||xy - goal||_1 + 4 - ctrl - contact"
    default_task = GoalTask(goal=(1.0, 1.0))
    survive_reward = 0.0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[GoalTask]:
        goals = rng.uniform(-3.0, 3.0, size=(check_n(n), 2))
        return [GoalTask(goal=(float(x), float(y))) for x, y in goals]

    def set_task(self, task: GoalTask) -> None:
        if not isinstance(task, GoalTask) or len(task.goal) != 2:
            raise TypeError(f"AntGoal expects a 2-D GoalTask, got {task!r}")
        self._task = task

    def task_reward(self, x_velocity: float, xy: np.ndarray) -> float:
        return goal_reward(xy, np.asarray(self._task.goal))


# --- the vectorized twins --------------------------------------------------------------------
class _AntTwin(MujocoTwin):
    """Ant observation (by default ``qpos[2:]``, ``qvel``, clipped ``cfrc_ext``; laid out as the
    single env's arguments say), reward and health, batched, on either engine.

    ``xpos`` and ``cfrc_ext`` are derived fields that both engines leave as ``mj_step`` leaves
    them in a single ``MjData``: from the last substep's state before its integration.
    """

    #: MuJoCo Warp's buffers per world: 150 steps of 32 ants under clipped N(0, 1) actions never
    #: had more than 4 contacts (0.37 on average) or 19 constraint rows in a world; 4x and 2.5x that.
    contact_buffers = (16, 48)

    def _bind_fields(self) -> None:
        self.xpos = self._field("xpos", 3)
        self.cfrc_ext = self._field("cfrc_ext", 6)

    def _before_step(self) -> Any:
        return self._snapshot(self.xpos[:, self.reference.main_body, :2])

    def _contact_forces(self) -> Any:
        return contact_forces(self.cfrc_ext, self.reference.contact_force_range)

    def _observe(self) -> Any:
        ref = self.reference
        parts = [self.qpos[:, ref.observed_qpos_start :], self.qvel]
        if ref.observes_contact_forces:
            parts.append(self._contact_forces()[:, 1:].reshape(self.num_envs, -1))
        return self._concat(parts)

    def _reward(self, actions: Any, before: Any) -> Any:
        xy = self.xpos[:, self.reference.main_body, :2]
        x_velocity = (xy[:, 0] - before[:, 0]) / self.dt
        task_reward = self._task_reward(x_velocity, xy)
        return ant_reward(task_reward, actions, self._contact_forces(), self.reference.survive_reward)[0]

    def _terminated(self) -> Any:
        return ~is_healthy(self.qpos, self.qvel, self.reference.healthy_z_range)

    def _task_reward(self, x_velocity: Any, xy: Any) -> Any:
        raise NotImplementedError


class AntVelTwin(_AntTwin):
    """The vectorized :class:`AntVelEnv`, on any engine."""

    single_env_cls = AntVelEnv

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._goal_velocity = self._task_array([t.velocity for t in tasks])

    def _task_reward(self, x_velocity: Any, xy: Any) -> Any:
        return velocity_reward(x_velocity, self._goal_velocity)


class AntDirTwin(_AntTwin):
    """The vectorized :class:`AntDirEnv`, on any engine."""

    single_env_cls = AntDirEnv

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._direction = self._task_array([t.direction for t in tasks])

    def _task_reward(self, x_velocity: Any, xy: Any) -> Any:
        return direction_reward(x_velocity, self._direction)


class AntGoalTwin(_AntTwin):
    """The vectorized :class:`AntGoalEnv`, on any engine."""

    single_env_cls = AntGoalEnv

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._goal = self._task_array([t.goal for t in tasks]).reshape(len(tasks), 2)

    def _task_reward(self, x_velocity: Any, xy: Any) -> Any:
        return goal_reward(xy, self._goal)


class AntVelVectorEnv(AntVelTwin, MujocoBatchVectorEnv):
    """Batched twin of :class:`AntVelEnv` (MuJoCo's C engine, ``mujoco.batch``)."""


class AntDirVectorEnv(AntDirTwin, MujocoBatchVectorEnv):
    """Batched twin of :class:`AntDirEnv` (MuJoCo's C engine, ``mujoco.batch``)."""


class AntGoalVectorEnv(AntGoalTwin, MujocoBatchVectorEnv):
    """Batched twin of :class:`AntGoalEnv` (MuJoCo's C engine, ``mujoco.batch``)."""


class AntVelWarpVectorEnv(AntVelTwin, WarpVectorEnv):
    """:class:`AntVelEnv` on MuJoCo Warp (GPU, or Warp's CPU device)."""


class AntDirWarpVectorEnv(AntDirTwin, WarpVectorEnv):
    """:class:`AntDirEnv` on MuJoCo Warp (GPU, or Warp's CPU device)."""


class AntGoalWarpVectorEnv(AntGoalTwin, WarpVectorEnv):
    """:class:`AntGoalEnv` on MuJoCo Warp (GPU, or Warp's CPU device)."""
