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
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from metarl_envs.base import DirectionTask, GoalTask, VelocityTask, check_n

CTRL_COST_WEIGHT = 0.005
CONTACT_COST_WEIGHT = 5e-4
SURVIVE_REWARD = 0.05
PROBE_SITE = "metarl_contact_probe"


def with_contact_force_sensor(path: str) -> mujoco.MjModel:
    """The model at ``path`` plus one force sensor on the torso, so that every ``mj_step``
    computes ``cfrc_ext``. Sensors read the state; they change nothing in the dynamics."""
    spec = mujoco.MjSpec.from_file(path)
    spec.body("torso").add_site(name=PROBE_SITE)
    spec.add_sensor(type=mujoco.mjtSensor.mjSENS_FORCE, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=PROBE_SITE)
    return spec.compile()


class _AntTaskEnv(AntEnv):
    """Shared model, step and costs of the ant families; subclasses define task and reward."""

    _task: Any
    default_task: Any = None
    survive_reward = SURVIVE_REWARD

    def __init__(self, task: Any = None, **kwargs: Any) -> None:
        super().__init__(ctrl_cost_weight=CTRL_COST_WEIGHT, contact_cost_weight=CONTACT_COST_WEIGHT, **kwargs)
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
        xy_before = self.data.body(self._main_body).xpos[:2].copy()
        self.do_simulation(action, self.frame_skip)
        xy = self.data.body(self._main_body).xpos[:2].copy()
        x_velocity = (xy[0] - xy_before[0]) / self.dt
        task_reward = self.task_reward(x_velocity, xy)
        ctrl_cost = self.control_cost(action)
        contact_cost = self.contact_cost
        state = self.state_vector()
        low, high = self._healthy_z_range
        healthy = bool(np.isfinite(state).all() and low <= state[2] <= high)
        info = {
            "x_position": self.data.qpos[0],
            "y_position": self.data.qpos[1],
            "x_velocity": x_velocity,
            "reward_task": task_reward,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact_cost,
        }
        reward = task_reward + self.survive_reward - ctrl_cost - contact_cost
        return self._get_obs(), reward, not healthy, False, info


class AntVelEnv(_AntTaskEnv):
    """Ant that must run forward at a goal velocity drawn from U[0, 3]."""

    task_distribution = "goal velocity ~ U[0, 3]; reward = -|v_x - goal| + 1.05 - ctrl - contact"
    default_task = VelocityTask(velocity=1.5)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[VelocityTask]:
        return [VelocityTask(velocity=float(v)) for v in rng.uniform(0.0, 3.0, size=check_n(n))]

    def set_task(self, task: VelocityTask) -> None:
        if not isinstance(task, VelocityTask):
            raise TypeError(f"AntVel expects a VelocityTask, got {task!r}")
        self._task = task

    def task_reward(self, x_velocity: float, xy: np.ndarray) -> float:
        return -abs(x_velocity - self._task.velocity) + 1.0


class AntDirEnv(_AntTaskEnv):
    """Ant that must run forward or backward, each with probability 1/2."""

    task_distribution = "direction ~ {-1, +1} (p = 1/2); reward = dir * v_x + 0.05 - ctrl - contact"
    default_task = DirectionTask(direction=1)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[DirectionTask]:
        return [DirectionTask(direction=int(d)) for d in rng.choice([-1, 1], size=check_n(n))]

    def set_task(self, task: DirectionTask) -> None:
        if not isinstance(task, DirectionTask) or task.direction not in (-1, 1):
            raise TypeError(f"AntDir expects DirectionTask(direction=±1), got {task!r}")
        self._task = task

    def task_reward(self, x_velocity: float, xy: np.ndarray) -> float:
        return self._task.direction * x_velocity


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
        return -float(np.abs(xy - np.asarray(self._task.goal)).sum()) + 4.0
