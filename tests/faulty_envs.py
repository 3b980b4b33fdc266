"""Task envs that misbehave on purpose, for the reliability tests (registered on import)."""

import gymnasium as gym
import numpy as np


class FaultyPoint(gym.Env):
    """A 1D point to a goal that behaves for its first ``after`` steps; then ``fault="nan"``
    pays NaN rewards and ``fault="raise"`` raises in ``step``."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-0.2, 0.2, (1,), np.float32)

    def __init__(self, fault=None, after=0):
        self.fault, self.after, self.count = fault, after, 0
        self.goal, self.x = 0.5, 0.0

    def sample_tasks(self, n, rng):
        return [round(float(g), 3) for g in rng.uniform(-1, 1, n)]

    def set_task(self, task):
        self.goal = float(task)

    def get_task(self):
        return self.goal

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.count += 1
        if self.fault == "raise" and self.count > self.after:
            raise FloatingPointError("simulated blow-up")
        self.x += float(np.clip(action[0], -0.2, 0.2))
        broken = self.fault == "nan" and self.count > self.after
        reward = float("nan") if broken else -abs(self.x - self.goal)
        return np.array([self.x], np.float32), reward, False, False, {}


if "faulty/Point-v0" not in gym.registry:
    gym.register("faulty/Point-v0", entry_point=FaultyPoint, max_episode_steps=10)


class NoGetTask(FaultyPoint):
    """Forgets get_task."""

    get_task = None


if "faulty/NoGetTask-v0" not in gym.registry:
    gym.register("faulty/NoGetTask-v0", entry_point=NoGetTask, max_episode_steps=10)
