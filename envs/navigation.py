"""2D navigation (Finn et al. 2017, section 5.3): a point moves to a random goal.

The point starts at the origin. Actions are velocities, clipped to [-0.1, 0.1] per axis. The
reward is the negative Euclidean distance to the goal after the move, and the episode
terminates once the point is within 0.01 of the goal. The horizon (100) is applied by the
``TimeLimit`` that ``gymnasium.make`` adds.

:class:`Navigation2DEnv` is the readable single env; :class:`Navigation2DVectorEnv` is its
NumPy-vectorized twin used by ``gymnasium.make_vec`` and the sampler. Both compute the reward
and termination with :func:`navigation_reward`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from metarl_envs.base import GoalTask, TaskVectorEnv, check_n

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_SPEED = 0.1
GOAL_RADIUS = 0.01


def _check_goal(task: Any) -> np.ndarray:
    if not isinstance(task, GoalTask) or len(task.goal) != 2:
        raise TypeError(f"Navigation2D expects a GoalTask with a 2D goal, got {task!r}")
    return np.asarray(task.goal, dtype=np.float64)


def navigation_reward(pos: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reward ``-||pos - goal||`` after the move, whether the point is within ``GOAL_RADIUS``
    of the goal (which ends the episode), and the distance; ``pos`` and ``goal`` end in the 2
    coordinates (one row per sub-env in a batch)."""
    distance = np.linalg.norm(pos - goal, axis=-1)
    return -distance, distance < GOAL_RADIUS, distance


class Navigation2DEnv(gym.Env):
    """Point-mass navigation to a goal drawn from U[-0.5, 0.5]^2."""

    metadata = {"render_modes": []}
    task_distribution = "goal ~ U[-0.5, 0.5]^2; reward = -||pos - goal||; ends within 0.01"

    def __init__(self, task: GoalTask | None = None) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-MAX_SPEED, MAX_SPEED, shape=(2,), dtype=np.float32)
        self._task = task if task is not None else GoalTask(goal=(0.0, 0.0))
        self._goal = _check_goal(self._task)
        self._pos = np.zeros(2, dtype=np.float64)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[GoalTask]:
        goals = rng.uniform(GOAL_LOW, GOAL_HIGH, size=(check_n(n), 2))
        return [GoalTask(goal=(float(x), float(y))) for x, y in goals]

    def set_task(self, task: GoalTask) -> None:
        self._goal = _check_goal(task)
        self._task = task

    def get_task(self) -> GoalTask:
        return self._task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos = np.zeros(2, dtype=np.float64)
        return self._pos.astype(np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -MAX_SPEED, MAX_SPEED)
        self._pos = self._pos + action
        reward, terminated, distance = navigation_reward(self._pos, self._goal)
        info = {"distance": float(distance)}
        return self._pos.astype(np.float32), float(reward), bool(terminated), False, info


class Navigation2DVectorEnv(TaskVectorEnv):
    """``num_envs`` copies of :class:`Navigation2DEnv` stepped together in NumPy.

    Each sub-env has its own goal (set with ``set_tasks``). The dynamics are deterministic: a
    seed given to ``reset`` changes nothing.
    """

    def __init__(self, num_envs: int, max_episode_steps: int | None = 100) -> None:
        self._setup(Navigation2DEnv(), num_envs, max_episode_steps)
        self._pos = np.zeros((num_envs, 2))
        self.set_tasks(self._tasks)

    def _set_task_arrays(self, tasks: list[GoalTask]) -> None:
        self._goals = np.stack([_check_goal(t) for t in tasks])

    def _actions(self, actions: Any) -> np.ndarray:
        return np.clip(np.asarray(actions, dtype=np.float64), -MAX_SPEED, MAX_SPEED)

    def _reset_ids(self, ids: np.ndarray) -> None:
        self._pos[ids] = 0.0

    def _advance(self, actions: np.ndarray, restart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._pos = self._pos + actions
        self._reset_ids(np.flatnonzero(restart))  # their move is discarded
        reward, terminated, _ = navigation_reward(self._pos, self._goals)
        return reward, terminated

    def _observe(self) -> np.ndarray:
        return self._pos.astype(np.float32)
