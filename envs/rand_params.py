"""Random-physics task families: Gymnasium's v5 locomotion tasks with randomized dynamics.

A task (:class:`~metarl_envs.base.PhysicsTask`) multiplies every entry of the model's body
masses, body inertias, DOF damping and geom friction by ``1.5**u``, with ``u ~ U[-3, 3]`` drawn
independently per entry (the distribution of the "rand_param_envs" used by ProMP and PEARL). The
reward, observation, reset noise and termination are the Gymnasium v5 task's own; actions are
clipped to the action space before they are applied and costed.

* ``HalfCheetahRandParams``: reward = v_x - 0.1 ||a||^2; never terminates.
* ``HopperRandParams``: reward = v_x + 1 (while healthy) - 0.001 ||a||^2; terminates when unhealthy.
* ``Walker2dRandParams``: reward = v_x + 1 (while healthy) - 0.001 ||a||^2; terminates when unhealthy.

After the parameters change, ``mj_setConst`` recomputes the constants MuJoCo derives from them
(inverse weights used by the constraint solver, and so on); the state in force is kept, and the
new physics applies from the next step on.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from metarl_envs.base import PhysicsTask, check_n

#: The randomized MjModel fields, in the order of PhysicsTask's fields.
FIELDS = ("body_mass", "body_inertia", "dof_damping", "geom_friction")
LOG_SCALE_LIMIT = 3.0
BASE = 1.5


class _RandParamsEnv:
    """Task protocol over the model's physics parameters, mixed into a Gymnasium MuJoCo env."""

    model: mujoco.MjModel
    data: mujoco.MjData
    task_distribution = "each mass, inertia, damping and friction entry x 1.5^u, u ~ U[-3, 3]"

    def _init_params(self, task: PhysicsTask | None) -> None:
        self.nominal = {f: getattr(self.model, f).copy() for f in FIELDS}
        self.set_task(task if task is not None else self.nominal_task())

    def nominal_task(self) -> PhysicsTask:
        """The unmodified model (every multiplier 1)."""
        return PhysicsTask(**{f: (1.0,) * self.nominal[f].size for f in FIELDS})

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[PhysicsTask]:
        tasks = []
        for _ in range(check_n(n)):
            scales = {
                f: BASE ** rng.uniform(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT, size=self.nominal[f].size)
                for f in FIELDS
            }
            tasks.append(PhysicsTask(**{f: tuple(float(x) for x in s) for f, s in scales.items()}))
        return tasks

    def multipliers(self, task: Any) -> dict[str, np.ndarray]:
        """The task's multipliers shaped like the model fields; a one-line error if they do not fit."""
        name = type(self).__name__.removesuffix("Env")
        if not isinstance(task, PhysicsTask):
            raise TypeError(f"{name} expects a PhysicsTask, got {task!r}")
        out = {}
        for f in FIELDS:
            values = np.asarray(getattr(task, f), dtype=np.float64)
            if values.size != self.nominal[f].size:
                raise ValueError(
                    f"{name}: PhysicsTask.{f} has {values.size} entries, the model has {self.nominal[f].size}"
                )
            out[f] = values.reshape(self.nominal[f].shape)
        return out

    def set_task(self, task: PhysicsTask) -> None:
        for f, scale in self.multipliers(task).items():
            getattr(self.model, f)[:] = self.nominal[f] * scale
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        state = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, state, spec)
        mujoco.mj_setConst(self.model, self.data)
        mujoco.mj_setState(self.model, self.data, state, spec)
        self._task = task

    def get_task(self) -> PhysicsTask:
        return self._task

    def step(self, action):
        space = self.action_space  # type: ignore[attr-defined]
        return super().step(np.clip(action, space.low, space.high))  # type: ignore[misc]


class HalfCheetahRandParamsEnv(_RandParamsEnv, HalfCheetahEnv):
    """Gymnasium's HalfCheetah-v5 (run forward) with randomized physics."""

    def __init__(self, task: PhysicsTask | None = None, **kwargs: Any) -> None:
        HalfCheetahEnv.__init__(self, **kwargs)
        self._init_params(task)


class HopperRandParamsEnv(_RandParamsEnv, HopperEnv):
    """Gymnasium's Hopper-v5 (hop forward) with randomized physics."""

    def __init__(self, task: PhysicsTask | None = None, **kwargs: Any) -> None:
        HopperEnv.__init__(self, **kwargs)
        self._init_params(task)


class Walker2dRandParamsEnv(_RandParamsEnv, Walker2dEnv):
    """Gymnasium's Walker2d-v5 (walk forward) with randomized physics."""

    def __init__(self, task: PhysicsTask | None = None, **kwargs: Any) -> None:
        Walker2dEnv.__init__(self, **kwargs)
        self._init_params(task)
