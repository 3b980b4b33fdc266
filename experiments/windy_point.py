"""A worked example of a user's own task family, outside metarl: a point in a windy plane.

A task is a goal and a wind. The point starts at the origin, the wind pushes it every step,
and the reward is the negative distance to the goal. The reward also pays for fighting the wind,
computed per env in plain Python: an env like this has no vectorized twin, so metarl samples it
with Gymnasium's ``SyncVectorEnv``.

Train it with ``metarl train experiments/windy_point.yaml`` (run from the repository root, so that
the module ``experiments.windy_point`` named in the config's env id can be imported).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class WindyGoal:
    """One task: where to go, and the wind that blows every step."""

    goal: tuple[float, float]
    wind: tuple[float, float]


class WindyPointEnv(gym.Env):
    """Reach ``goal`` while a constant ``wind`` drifts the point; actions are clipped to ±0.1."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)

    def __init__(self) -> None:
        self._task = WindyGoal(goal=(0.3, 0.3), wind=(0.0, 0.0))
        self._pos = np.zeros(2)

    # --- the task protocol -------------------------------------------------------------------
    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[WindyGoal]:
        goals = rng.uniform(-0.5, 0.5, size=(n, 2))
        winds = rng.uniform(-0.03, 0.03, size=(n, 2))
        return [
            WindyGoal(tuple(map(float, g)), tuple(map(float, w))) for g, w in zip(goals, winds, strict=True)
        ]

    def set_task(self, task: WindyGoal) -> None:
        if not isinstance(task, WindyGoal):
            raise TypeError(f"WindyPoint expects a WindyGoal, got {task!r}")
        self._task = task

    def get_task(self) -> WindyGoal:
        return self._task

    # --- Gymnasium ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos = np.zeros(2)
        return self._pos.astype(np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -0.1, 0.1)
        wind = np.asarray(self._task.wind)
        self._pos = self._pos + action + wind
        distance = float(np.linalg.norm(self._pos - np.asarray(self._task.goal)))
        against_wind = sum(
            max(0.0, -a * w) for a, w in zip(action, wind, strict=True)
        )  # a per-env Python loop
        reward = -distance - 0.1 * against_wind
        return self._pos.astype(np.float32), reward, distance < 0.01, False, {"distance": distance}


if "examples/WindyPoint-v0" not in gym.registry:
    gym.register("examples/WindyPoint-v0", entry_point=WindyPointEnv, max_episode_steps=100)
