"""Random-physics task families: Gymnasium's v5 locomotion tasks with randomized dynamics.

A task (:class:`~metarl_envs.base.PhysicsTask`) multiplies every entry of the model's body
masses, body inertias, DOF damping and geom friction by ``1.5**u``, with ``u ~ U[-3, 3]`` drawn
independently per entry (the distribution of the "rand_param_envs" used by ProMP and PEARL). The
reward, observation, reset noise and termination are the Gymnasium v5 task's own, with its
settings (``forward_reward_weight``, ``healthy_z_range``, ...) taken as env kwargs; actions are
clipped to the action space before they are applied and costed.

* ``HalfCheetahRandParams``: reward = v_x - 0.1 ||a||^2; never terminates.
* ``HopperRandParams``: reward = v_x + 1 (while healthy) - 0.001 ||a||^2; terminates when unhealthy.
* ``Walker2dRandParams``: reward = v_x + 1 (while healthy) - 0.001 ||a||^2; terminates when unhealthy.

After the parameters change, ``mj_setConst`` recomputes the constants MuJoCo derives from them
(inverse weights used by the constraint solver, and so on); the state in force is kept, and the
new physics applies from the next step on.

The step is Gymnasium v5's, written out with the reward and health functions below, which work on
one step or on a batch of sub-envs alike: the single envs and their batched twins
(:class:`HalfCheetahRandParamsVectorEnv`, :class:`HopperRandParamsVectorEnv`,
:class:`Walker2dRandParamsVectorEnv`, on :class:`~metarl_envs.batched.MujocoBatchVectorEnv`) both
call them. ``Batch.expand`` gives each batched sub-env its own physics parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from metarl_envs.base import PhysicsTask, check_n, control_cost, full_flags, init_kwargs
from metarl_envs.batched import MujocoBatchVectorEnv, MujocoTwin
from metarl_envs.warp import WarpVectorEnv

#: The randomized MjModel fields, in the order of PhysicsTask's fields.
FIELDS = ("body_mass", "body_inertia", "dof_damping", "geom_friction")
LOG_SCALE_LIMIT = 3.0
BASE = 1.5


@dataclass(frozen=True)
class Locomotion:
    """The settings of a Gymnasium v5 locomotion env that its reward, health check and reset use:
    the arguments it was built with. The half-cheetah has no health check (``healthy_z_range``
    None): no survival bonus, and it never terminates."""

    forward_reward_weight: float
    ctrl_cost_weight: float
    reset_noise_scale: float
    healthy_reward: float = 0.0
    terminate_when_unhealthy: bool = False
    healthy_z_range: tuple[float, float] | None = None
    healthy_angle_range: tuple[float, float] | None = None
    #: The hopper's bounds on every state entry but the root's x and z.
    healthy_state_range: tuple[float, float] | None = None
    #: Whether the observation leaves out the root's x (the first qpos entry).
    exclude_current_positions_from_observation: bool = True

    @property
    def observed_qpos_start(self) -> int:
        """The first qpos entry the observation holds."""
        return 1 if self.exclude_current_positions_from_observation else 0

    @classmethod
    def of(cls, env_cls: type, kwargs: dict[str, Any]) -> Locomotion:
        """The settings ``env_cls(**kwargs)`` runs with."""
        arguments = init_kwargs(env_cls, kwargs)
        return cls(**{f.name: arguments[f.name] for f in fields(cls) if f.name in arguments})

    @property
    def health_checked(self) -> bool:
        return self.healthy_z_range is not None


def locomotion_reward(
    x_velocity: np.ndarray, actions: np.ndarray, healthy: np.ndarray, settings: Locomotion
) -> tuple[np.ndarray, dict[str, Any]]:
    """Gymnasium v5's reward, ``w_forward * v_x (+ healthy_reward while healthy) - w_ctrl ||a||^2``
    (``actions`` clipped, one row per sub-env in a batch), and its terms for ``info``."""
    forward_reward = settings.forward_reward_weight * x_velocity
    ctrl_cost = control_cost(actions, settings.ctrl_cost_weight)
    terms = {"reward_forward": forward_reward, "reward_ctrl": -ctrl_cost}
    if not settings.health_checked:  # the half-cheetah
        return forward_reward - ctrl_cost, terms
    healthy_reward = healthy * settings.healthy_reward
    return forward_reward + healthy_reward - ctrl_cost, {**terms, "reward_survive": healthy_reward}


def is_healthy(qpos: np.ndarray, qvel: np.ndarray, settings: Locomotion) -> np.ndarray:
    """Gymnasium v5's health check: the torso's height ``qpos[1]`` and angle ``qpos[2]`` strictly
    inside their ranges and, for the hopper, every state entry but the root's x and z strictly
    inside ``healthy_state_range``. Always healthy without a health check."""
    if not settings.health_checked:
        return full_flags(qpos[..., 0], True)
    z, angle = qpos[..., 1], qpos[..., 2]
    (z_low, z_high), (a_low, a_high) = settings.healthy_z_range, settings.healthy_angle_range
    healthy = (z_low < z) & (z < z_high) & (a_low < angle) & (angle < a_high)
    if settings.healthy_state_range is not None:
        low, high = settings.healthy_state_range
        for part in (qpos[..., 2:], qvel):  # the state (qpos, qvel) but the root's x and z
            healthy = healthy & ((low < part) & (part < high)).all(axis=-1)
    return healthy


def is_terminated(healthy: np.ndarray, settings: Locomotion) -> np.ndarray:
    """An unhealthy env ends its episode, unless built with ``terminate_when_unhealthy=False``."""
    return ~healthy & settings.terminate_when_unhealthy


class _RandParamsEnv:
    """Task protocol over the model's physics parameters, and Gymnasium v5's step; mixed into a
    Gymnasium MuJoCo env, whose ``__init__`` runs first and then ``_init_params``."""

    model: mujoco.MjModel
    data: mujoco.MjData
    task_distribution = "each mass, inertia, damping and friction entry x 1.5^u, u ~ U[-3, 3]"
    #: The reward, health and reset settings (public, for the batched twin).
    locomotion: Locomotion

    def _init_params(self, env_cls: type, kwargs: dict[str, Any], task: PhysicsTask | None) -> None:
        self.locomotion = Locomotion.of(env_cls, kwargs)
        self.reset_noise_scale = self.locomotion.reset_noise_scale
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
        action = np.clip(action, space.low, space.high)
        x_before = self.data.qpos[0]
        self.do_simulation(action, self.frame_skip)  # type: ignore[attr-defined]
        x_velocity = (self.data.qpos[0] - x_before) / self.dt  # type: ignore[attr-defined]
        healthy = is_healthy(self.data.qpos, self.data.qvel, self.locomotion)
        reward, terms = locomotion_reward(x_velocity, action, healthy, self.locomotion)
        info = {"x_position": self.data.qpos[0]}
        if self.locomotion.health_checked:  # the hopper and the walker
            info["z_distance_from_origin"] = self.data.qpos[1] - self.init_qpos[1]  # type: ignore[attr-defined]
        info.update(x_velocity=x_velocity, **terms)
        if self.render_mode == "human":  # type: ignore[attr-defined]
            self.render()  # type: ignore[attr-defined]
        terminated = bool(is_terminated(healthy, self.locomotion))
        return self._get_obs(), reward, terminated, False, info  # type: ignore[attr-defined]


class HalfCheetahRandParamsEnv(_RandParamsEnv, HalfCheetahEnv):
    """Gymnasium's HalfCheetah-v5 (run forward) with randomized physics."""

    def __init__(self, task: PhysicsTask | None = None, **kwargs: Any) -> None:
        HalfCheetahEnv.__init__(self, **kwargs)
        self._init_params(HalfCheetahEnv, kwargs, task)


class HopperRandParamsEnv(_RandParamsEnv, HopperEnv):
    """Gymnasium's Hopper-v5 (hop forward) with randomized physics."""

    def __init__(self, task: PhysicsTask | None = None, **kwargs: Any) -> None:
        HopperEnv.__init__(self, **kwargs)
        self._init_params(HopperEnv, kwargs, task)


class Walker2dRandParamsEnv(_RandParamsEnv, Walker2dEnv):
    """Gymnasium's Walker2d-v5 (walk forward) with randomized physics."""

    def __init__(self, task: PhysicsTask | None = None, **kwargs: Any) -> None:
        Walker2dEnv.__init__(self, **kwargs)
        self._init_params(Walker2dEnv, kwargs, task)


# --- the vectorized twins --------------------------------------------------------------------
class _RandParamsTwin(MujocoTwin):
    """Per-sub-env physics parameters (the engine gives each simulation its own masses,
    inertias, damping and friction, and recomputes the constants derived from them), and
    Gymnasium v5's observation, reward and termination, batched, on either engine."""

    batched_fields = FIELDS
    #: The randomized fields, one row per sub-env (bound by :meth:`_bind_fields`).
    _params: dict[str, Any]

    def _bind_fields(self) -> None:
        self._params = {f: self._physics(f) for f in FIELDS}

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        ref = self.reference
        for f in FIELDS:
            scales = np.stack([ref.multipliers(t)[f] for t in tasks])
            self._params[f][:] = self._task_array(ref.nominal[f] * scales)
        self._set_const()

    def _observe(self) -> Any:
        return self._concat([self.qpos[:, self.reference.locomotion.observed_qpos_start :], self.qvel])

    def _reward(self, actions: Any, x_before: Any) -> Any:
        settings = self.reference.locomotion
        x_velocity = (self.qpos[:, 0] - x_before) / self.dt
        healthy = is_healthy(self.qpos, self.qvel, settings)
        return locomotion_reward(x_velocity, actions, healthy, settings)[0]

    def _terminated(self) -> Any:
        settings = self.reference.locomotion
        return is_terminated(is_healthy(self.qpos, self.qvel, settings), settings)


class _HealthyTwin(_RandParamsTwin):
    """Hopper and walker: clipped velocities in the observation, and uniform reset noise on qvel."""

    uniform_qvel_noise = True

    def _observe(self) -> Any:
        start = self.reference.locomotion.observed_qpos_start
        return self._concat([self.qpos[:, start:], self.qvel.clip(-10.0, 10.0)])


class HalfCheetahRandParamsTwin(_RandParamsTwin):
    """The vectorized :class:`HalfCheetahRandParamsEnv`, on any engine."""

    single_env_cls = HalfCheetahRandParamsEnv


class HopperRandParamsTwin(_HealthyTwin):
    """The vectorized :class:`HopperRandParamsEnv`, on any engine."""

    single_env_cls = HopperRandParamsEnv


class Walker2dRandParamsTwin(_HealthyTwin):
    """The vectorized :class:`Walker2dRandParamsEnv`, on any engine."""

    single_env_cls = Walker2dRandParamsEnv


class HalfCheetahRandParamsVectorEnv(HalfCheetahRandParamsTwin, MujocoBatchVectorEnv):
    """Batched twin of :class:`HalfCheetahRandParamsEnv` (MuJoCo's C engine, ``mujoco.batch``)."""


class HopperRandParamsVectorEnv(HopperRandParamsTwin, MujocoBatchVectorEnv):
    """Batched twin of :class:`HopperRandParamsEnv` (MuJoCo's C engine, ``mujoco.batch``)."""


class Walker2dRandParamsVectorEnv(Walker2dRandParamsTwin, MujocoBatchVectorEnv):
    """Batched twin of :class:`Walker2dRandParamsEnv` (MuJoCo's C engine, ``mujoco.batch``)."""


class HalfCheetahRandParamsWarpVectorEnv(HalfCheetahRandParamsTwin, WarpVectorEnv):
    """:class:`HalfCheetahRandParamsEnv` on MuJoCo Warp (GPU, or Warp's CPU device)."""


class HopperRandParamsWarpVectorEnv(HopperRandParamsTwin, WarpVectorEnv):
    """:class:`HopperRandParamsEnv` on MuJoCo Warp (GPU, or Warp's CPU device)."""


class Walker2dRandParamsWarpVectorEnv(Walker2dRandParamsTwin, WarpVectorEnv):
    """:class:`Walker2dRandParamsEnv` on MuJoCo Warp (GPU, or Warp's CPU device)."""
