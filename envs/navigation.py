"""2D navigation (Finn et al. 2017, section 5.3): a point moves to a random goal.

The point starts at the origin. Actions are velocities, clipped to [-0.1, 0.1] per axis. The
reward is the negative Euclidean distance to the goal after the move, and the episode
terminates once the point is within 0.01 of the goal. The horizon (100) is applied by the
``TimeLimit`` that ``gymnasium.make`` adds.

:class:`Navigation2DEnv` is the readable single env; :class:`Navigation2DVectorEnv` is its
NumPy-vectorized twin used by ``gymnasium.make_vec`` and the sampler.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from metarl_envs.base import GoalTask, check_n

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_SPEED = 0.1
GOAL_RADIUS = 0.01


def _observation_space() -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)


def _action_space() -> spaces.Box:
    return spaces.Box(-MAX_SPEED, MAX_SPEED, shape=(2,), dtype=np.float32)


def _sample_goal_tasks(n: int, rng: np.random.Generator) -> list[GoalTask]:
    goals = rng.uniform(GOAL_LOW, GOAL_HIGH, size=(check_n(n), 2))
    return [GoalTask(goal=(float(x), float(y))) for x, y in goals]


def _check_goal(task: Any) -> np.ndarray:
    if not isinstance(task, GoalTask) or len(task.goal) != 2:
        raise TypeError(f"Navigation2D expects a GoalTask with a 2D goal, got {task!r}")
    return np.asarray(task.goal, dtype=np.float64)


class Navigation2DEnv(gym.Env):
    """Point-mass navigation to a goal drawn from U[-0.5, 0.5]^2."""

    metadata = {"render_modes": []}
    task_distribution = "goal ~ U[-0.5, 0.5]^2; reward = -||pos - goal||; ends within 0.01"

    def __init__(self, task: GoalTask | None = None) -> None:
        self.observation_space = _observation_space()
        self.action_space = _action_space()
        self._task = task if task is not None else GoalTask(goal=(0.0, 0.0))
        self._goal = _check_goal(self._task)
        self._pos = np.zeros(2, dtype=np.float64)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[GoalTask]:
        return _sample_goal_tasks(n, rng)

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
        distance = float(np.linalg.norm(self._pos - self._goal))
        terminated = distance < GOAL_RADIUS
        return self._pos.astype(np.float32), -distance, terminated, False, {"distance": distance}


class Navigation2DVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`Navigation2DEnv` stepped together in NumPy.

    Each sub-env has its own goal (set with ``set_tasks``). Autoreset follows Gymnasium's
    ``NEXT_STEP`` mode, like ``SyncVectorEnv``: the step after an episode ends returns the reset
    observation with reward 0 and ignores the action.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, max_episode_steps: int | None = 100) -> None:
        self.num_envs = num_envs
        self.single_observation_space = _observation_space()
        self.single_action_space = _action_space()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.max_episode_steps = max_episode_steps
        self._tasks = [GoalTask(goal=(0.0, 0.0))] * num_envs
        self._goals = np.zeros((num_envs, 2))
        self._pos = np.zeros((num_envs, 2))
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[GoalTask]:
        return _sample_goal_tasks(n, rng)

    def set_tasks(self, tasks: list[GoalTask]) -> None:
        """Give sub-env ``i`` the task ``tasks[i]``."""
        if len(tasks) != self.num_envs:
            raise ValueError(f"set_tasks: got {len(tasks)} tasks for {self.num_envs} envs")
        self._goals = np.stack([_check_goal(t) for t in tasks])
        self._tasks = list(tasks)

    def get_tasks(self) -> list[GoalTask]:
        return list(self._tasks)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        # The dynamics are deterministic: a seed changes nothing but is accepted as usual.
        if seed is None or isinstance(seed, int):
            super().reset(seed=seed)
        self._pos[:] = 0.0
        self._elapsed[:] = 0
        self._autoreset[:] = False
        return self._pos.astype(np.float32), {}

    def step(self, actions):
        actions = np.clip(np.asarray(actions, dtype=np.float64), -MAX_SPEED, MAX_SPEED)
        restart = self._autoreset.copy()
        self._pos = np.where(restart[:, None], 0.0, self._pos + actions)
        self._elapsed = np.where(restart, 0, self._elapsed + 1)
        distance = np.linalg.norm(self._pos - self._goals, axis=1)
        reward = np.where(restart, 0.0, -distance)
        terminated = ~restart & (distance < GOAL_RADIUS)
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = ~restart & (self._elapsed >= self.max_episode_steps)
        self._autoreset = terminated | truncated
        return self._pos.astype(np.float32), reward, terminated, truncated, {}
