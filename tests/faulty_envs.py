"""Task envs that misbehave on purpose, for the reliability tests (registered on import)."""

import gymnasium as gym

from tests.user_env_example import PointGoal


class FaultyPoint(PointGoal):
    """The example's 1D point, well behaved for its first ``after`` steps; then ``fault="nan"``
    pays NaN rewards and ``fault="raise"`` raises in ``step``."""

    def __init__(self, fault=None, after=0):
        super().__init__()
        self.fault, self.after, self.count = fault, after, 0

    def sample_tasks(self, n, rng):
        return [round(task, 3) for task in super().sample_tasks(n, rng)]

    def step(self, action):
        self.count += 1
        if self.fault == "raise" and self.count > self.after:
            raise FloatingPointError("simulated blow-up")
        obs, reward, terminated, truncated, info = super().step(action)
        if self.fault == "nan" and self.count > self.after:
            reward = float("nan")
        return obs, reward, terminated, truncated, info


if "faulty/Point-v0" not in gym.registry:
    gym.register("faulty/Point-v0", entry_point=FaultyPoint, max_episode_steps=10)


class NoGetTask(FaultyPoint):
    """Forgets get_task."""

    get_task = None


if "faulty/NoGetTask-v0" not in gym.registry:
    gym.register("faulty/NoGetTask-v0", entry_point=NoGetTask, max_episode_steps=10)
