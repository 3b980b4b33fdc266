"""A user's own task env in their own module, registered on import (used by test_cli)."""

import gymnasium as gym
import numpy as np


class PointGoal(gym.Env):
    """A 1D point that must reach a goal in [-1, 1]; knows nothing of metarl."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-0.2, 0.2, (1,), np.float32)

    def __init__(self):
        self.goal = 0.5
        self.x = 0.0

    def sample_tasks(self, n, rng):
        return [float(g) for g in rng.uniform(-1, 1, n)]

    def set_task(self, task):
        self.goal = float(task)

    def get_task(self):
        return self.goal

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += float(np.clip(action[0], -0.2, 0.2))
        return np.array([self.x], np.float32), -abs(self.x - self.goal), False, False, {}


if "my/PointGoal-v0" not in gym.registry:
    gym.register("my/PointGoal-v0", entry_point=PointGoal, max_episode_steps=20)
