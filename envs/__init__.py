"""metarl's task families: parameterized Gymnasium environments, one task per draw.

Importing this package registers every family under the ``metarl/`` namespace, so
``gymnasium.make("metarl/Navigation2D-v0")`` works after ``import metarl`` (or
``import metarl_envs``). This package depends on Gymnasium, MuJoCo and NumPy only; it knows
nothing of policies or learners.

Every family follows the task protocol (see :class:`metarl_envs.base.TaskEnv`):
``sample_tasks(n, rng)``, ``set_task(task)`` and ``get_task()``. Its module holds the single env,
the functions that compute its reward (and termination), and its vectorized twin, which calls the
same functions: a :class:`metarl_envs.base.TaskVectorEnv` (NEXT_STEP autoreset), for the MuJoCo
families on the batched engine of :mod:`metarl_envs.batched`. The MuJoCo families' twin logic also
runs on MuJoCo Warp (:mod:`metarl_envs.warp`, :data:`WARP_ENTRY_POINTS`), with torch tensors on a
GPU; that engine needs the ``gpu`` extra and is imported only when used.
"""

from __future__ import annotations

import gymnasium
from metarl_envs.base import DirectionTask, GoalTask, PhysicsTask, TaskEnv, VelocityTask

__all__ = [
    "DirectionTask",
    "GoalTask",
    "PhysicsTask",
    "TaskEnv",
    "VelocityTask",
    "FAMILIES",
    "WARP_ENTRY_POINTS",
    "register_all",
]

#: Registered families: id -> (entry point, vector entry point or None, horizon).
FAMILIES: dict[str, tuple[str, str | None, int]] = {
    "metarl/Navigation2D-v0": (
        "metarl_envs.navigation:Navigation2DEnv",
        "metarl_envs.navigation:Navigation2DVectorEnv",
        100,
    ),
    "metarl/HalfCheetahVel-v0": (
        "metarl_envs.half_cheetah:HalfCheetahVelEnv",
        "metarl_envs.half_cheetah:HalfCheetahVelVectorEnv",
        200,
    ),
    "metarl/HalfCheetahDir-v0": (
        "metarl_envs.half_cheetah:HalfCheetahDirEnv",
        "metarl_envs.half_cheetah:HalfCheetahDirVectorEnv",
        200,
    ),
    "metarl/AntVel-v0": ("metarl_envs.ant:AntVelEnv", "metarl_envs.ant:AntVelVectorEnv", 200),
    "metarl/AntDir-v0": ("metarl_envs.ant:AntDirEnv", "metarl_envs.ant:AntDirVectorEnv", 200),
    "metarl/AntGoal-v0": ("metarl_envs.ant:AntGoalEnv", "metarl_envs.ant:AntGoalVectorEnv", 200),
    "metarl/HalfCheetahRandParams-v0": (
        "metarl_envs.rand_params:HalfCheetahRandParamsEnv",
        "metarl_envs.rand_params:HalfCheetahRandParamsVectorEnv",
        200,
    ),
    "metarl/HopperRandParams-v0": (
        "metarl_envs.rand_params:HopperRandParamsEnv",
        "metarl_envs.rand_params:HopperRandParamsVectorEnv",
        200,
    ),
    "metarl/Walker2dRandParams-v0": (
        "metarl_envs.rand_params:Walker2dRandParamsEnv",
        "metarl_envs.rand_params:Walker2dRandParamsVectorEnv",
        200,
    ),
    "metarl/Bandit-v0": ("metarl_envs.discrete:BanditEnv", "metarl_envs.discrete:BanditVectorEnv", 10),
    "metarl/TabularMDP-v0": (
        "metarl_envs.discrete:TabularMDPEnv",
        "metarl_envs.discrete:TabularMDPVectorEnv",
        10,
    ),
}


#: The families with a MuJoCo Warp twin (``sampler.backend: warp``): id -> its entry point.
WARP_ENTRY_POINTS: dict[str, str] = {
    "metarl/HalfCheetahVel-v0": "metarl_envs.half_cheetah:HalfCheetahVelWarpVectorEnv",
    "metarl/HalfCheetahDir-v0": "metarl_envs.half_cheetah:HalfCheetahDirWarpVectorEnv",
    "metarl/AntVel-v0": "metarl_envs.ant:AntVelWarpVectorEnv",
    "metarl/AntDir-v0": "metarl_envs.ant:AntDirWarpVectorEnv",
    "metarl/AntGoal-v0": "metarl_envs.ant:AntGoalWarpVectorEnv",
    "metarl/HalfCheetahRandParams-v0": "metarl_envs.rand_params:HalfCheetahRandParamsWarpVectorEnv",
    "metarl/HopperRandParams-v0": "metarl_envs.rand_params:HopperRandParamsWarpVectorEnv",
    "metarl/Walker2dRandParams-v0": "metarl_envs.rand_params:Walker2dRandParamsWarpVectorEnv",
}


def register_all() -> None:
    """Register every family with Gymnasium; calling it again is harmless."""
    for env_id, (entry_point, vector_entry_point, horizon) in FAMILIES.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point=entry_point,
            vector_entry_point=vector_entry_point,
            max_episode_steps=horizon,
        )


register_all()
