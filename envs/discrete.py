"""Discrete task families, for a categorical policy: multi-armed bandits and random tabular MDPs
(the two problems of Duan et al. 2016, "RL²", section 4.1).

* ``Bandit``: ``num_arms`` Bernoulli arms (default 5) whose success probabilities ~ U[0, 1] each
  form the task. One episode is ``horizon`` pulls (10 by default); the observation is a constant
  1, so the policy learns a distribution over arms.
* ``TabularMDP``: ``num_states`` = 10 states and ``num_actions`` = 5 actions. A task draws every
  transition distribution P(·|s, a) from Dirichlet(1, ..., 1) and every mean reward from N(1, 1);
  a step pays the mean reward plus N(0, 1) noise. Episodes start in a uniformly drawn state and
  last 10 steps; the observation is the state, one-hot.

Each has a NumPy twin that steps every sub-env at once. Its only per-sub-env loop draws the
random numbers, one generator per sub-env seeded as the single env seeds its own, so that both
produce the same episodes from the same seeds (the tests check it). Both turn the draws into
rewards and next states with the same functions (:func:`bandit_reward`, :func:`mdp_step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from metarl_envs.base import TaskVectorEnv, check_n


@dataclass(frozen=True)
class BanditTask:
    """The success probability of every arm."""

    means: tuple[float, ...]


@dataclass(frozen=True)
class MDPTask:
    """``transitions[s][a]`` is P(·|s, a); ``rewards[s][a]`` is the mean reward of (s, a)."""

    transitions: tuple[tuple[tuple[float, ...], ...], ...]
    rewards: tuple[tuple[float, ...], ...]


# --- Bandit -----------------------------------------------------------------------------------
def _check_arms(num_arms: int) -> int:
    if isinstance(num_arms, bool) or not isinstance(num_arms, (int, np.integer)) or num_arms < 2:
        raise ValueError(f"Bandit: num_arms must be an int >= 2, got {num_arms!r}")
    return int(num_arms)


def _bandit_means(task: Any, num_arms: int) -> np.ndarray:
    if not isinstance(task, BanditTask) or len(task.means) != num_arms:
        raise TypeError(f"Bandit expects a BanditTask with {num_arms} means, got {task!r}")
    means = np.asarray(task.means, dtype=np.float64)
    if not ((means >= 0) & (means <= 1)).all():
        raise ValueError(f"Bandit: arm probabilities must lie in [0, 1], got {task.means}")
    return means


def _sample_bandits(n: int, num_arms: int, rng: np.random.Generator) -> list[BanditTask]:
    return [BanditTask(tuple(float(p) for p in row)) for row in rng.uniform(0.0, 1.0, (check_n(n), num_arms))]


def bandit_reward(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """1 if the uniform draw ``u`` falls below the pulled arm's probability ``p``, else 0."""
    return np.asarray(u < p, dtype=np.float64)


class BanditEnv(gym.Env):
    """A Bernoulli bandit: pulling arm ``a`` pays 1 with probability ``means[a]``, else 0."""

    metadata = {"render_modes": []}
    task_distribution = "arm probabilities ~ U[0, 1]^k (k = 5); reward ~ Bernoulli(p_arm)"

    def __init__(self, num_arms: int = 5, task: BanditTask | None = None) -> None:
        self.num_arms = _check_arms(num_arms)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(self.num_arms)
        self.set_task(task or BanditTask(tuple(np.linspace(0.1, 0.9, self.num_arms))))

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[BanditTask]:
        return _sample_bandits(n, self.num_arms, rng)

    def set_task(self, task: BanditTask) -> None:
        self._means = _bandit_means(task, self.num_arms)
        self._task = task

    def get_task(self) -> BanditTask:
        return self._task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        arm = int(action)
        reward = float(bandit_reward(self.np_random.random(), self._means[arm]))
        return np.ones(1, np.float32), reward, False, False, {"arm": arm}


# --- Tabular MDP ------------------------------------------------------------------------------
def _mdp_arrays(task: Any, num_states: int, num_actions: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        p = np.asarray(task.transitions, dtype=np.float64)
        r = np.asarray(task.rewards, dtype=np.float64)
    except (AttributeError, ValueError):
        raise TypeError(f"TabularMDP expects an MDPTask, got {task!r}") from None
    if (
        not isinstance(task, MDPTask)
        or p.shape != (num_states, num_actions, num_states)
        or r.shape != p.shape[:2]
    ):
        raise TypeError(
            f"TabularMDP expects an MDPTask with transitions of shape "
            f"({num_states}, {num_actions}, {num_states}); got {p.shape}"
        )
    return p, r


def _sample_mdps(n: int, num_states: int, num_actions: int, rng: np.random.Generator) -> list[MDPTask]:
    tasks = []
    for _ in range(check_n(n)):
        p = rng.dirichlet(np.ones(num_states), size=(num_states, num_actions))
        r = rng.normal(1.0, 1.0, size=(num_states, num_actions))
        transitions = tuple(tuple(tuple(float(x) for x in pa) for pa in ps) for ps in p)
        tasks.append(MDPTask(transitions, tuple(tuple(float(x) for x in rs) for rs in r)))
    return tasks


def mdp_step(
    mean_reward: np.ndarray, cumulative: np.ndarray, noise: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The reward and next state of (s, a): the mean reward plus the N(0, 1) draw ``noise``, and
    the inverse-CDF draw of the uniform ``u``, the first state whose cumulative probability
    (``cumulative``: the cumsum of P(·|s, a)) exceeds ``u``."""
    u = np.asarray(u)
    next_state = np.minimum((cumulative <= u[..., None]).sum(-1), cumulative.shape[-1] - 1)
    return mean_reward + noise, next_state


class TabularMDPEnv(gym.Env):
    """A random finite MDP; the task is its transition and reward tables."""

    metadata = {"render_modes": []}
    task_distribution = "P(.|s,a) ~ Dirichlet(1), mean reward ~ N(1, 1); 10 states, 5 actions"

    def __init__(self, num_states: int = 10, num_actions: int = 5, task: MDPTask | None = None) -> None:
        if num_states < 2 or num_actions < 2:
            raise ValueError(f"TabularMDP: need >= 2 states and actions, got {num_states} and {num_actions}")
        self.num_states, self.num_actions = int(num_states), int(num_actions)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.num_states,), np.float32)
        self.action_space = gym.spaces.Discrete(self.num_actions)
        self._state = 0
        self.set_task(task or _sample_mdps(1, self.num_states, self.num_actions, np.random.default_rng(0))[0])

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[MDPTask]:
        return _sample_mdps(n, self.num_states, self.num_actions, rng)

    def set_task(self, task: MDPTask) -> None:
        p, self._rewards = _mdp_arrays(task, self.num_states, self.num_actions)
        self._cumulative = np.cumsum(p, axis=-1)
        self._task = task

    def get_task(self) -> MDPTask:
        return self._task

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.num_states, np.float32)
        obs[self._state] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state = int(self.np_random.integers(self.num_states))
        return self._obs(), {}

    def step(self, action):
        s, a = self._state, int(action)
        noise = self.np_random.standard_normal()
        u = self.np_random.random()
        reward, next_state = mdp_step(self._rewards[s, a], self._cumulative[s, a], noise, u)
        self._state = int(next_state)
        return self._obs(), float(reward), False, False, {}


# --- the NumPy twins --------------------------------------------------------------------------
class _SeededVectorEnv(TaskVectorEnv):
    """NumPy twin of a discrete family: it draws from one generator per sub-env."""

    def __init__(self, single: gym.Env, num_envs: int, max_episode_steps: int | None) -> None:
        self._setup(single, num_envs, max_episode_steps)
        self.set_tasks(self._tasks)

    def _draw(self, ids: np.ndarray, method: str, *args: Any) -> np.ndarray:
        """One draw of ``Generator.method(*args)`` from each of the sub-envs ``ids``."""
        return np.array([getattr(self._rngs[i], method)(*args) for i in ids])

    def _actions(self, actions: Any) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.int64)
        n = self.single_action_space.n
        if actions.shape != (self.num_envs,) or (actions < 0).any() or (actions >= n).any():
            raise ValueError(f"step: expected {self.num_envs} actions in [0, {n}), got {actions}")
        return actions

    def _advance(self, actions: np.ndarray, restart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        running = np.flatnonzero(~restart)
        reward = np.zeros(self.num_envs)
        reward[running] = self._step_ids(running, actions[running])
        self._reset_ids(np.flatnonzero(restart))
        return reward, np.zeros(self.num_envs, dtype=bool)

    def _step_ids(self, ids: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Step the sub-envs ``ids`` with their ``actions``; their rewards."""
        raise NotImplementedError


class BanditVectorEnv(_SeededVectorEnv):
    """NumPy twin of :class:`BanditEnv`."""

    def __init__(self, num_envs: int, max_episode_steps: int | None = 10, num_arms: int = 5) -> None:
        super().__init__(BanditEnv(num_arms), num_envs, max_episode_steps)

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        self._means = np.stack([_bandit_means(t, self.reference.num_arms) for t in tasks])

    def _reset_ids(self, ids: np.ndarray) -> None:
        pass

    def _step_ids(self, ids: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return bandit_reward(self._draw(ids, "random"), self._means[ids, actions])

    def _observe(self) -> np.ndarray:
        return np.ones((self.num_envs, 1), np.float32)


class TabularMDPVectorEnv(_SeededVectorEnv):
    """NumPy twin of :class:`TabularMDPEnv`."""

    def __init__(
        self, num_envs: int, max_episode_steps: int | None = 10, num_states: int = 10, num_actions: int = 5
    ) -> None:
        self._state = np.zeros(num_envs, dtype=np.int64)
        super().__init__(TabularMDPEnv(num_states, num_actions), num_envs, max_episode_steps)

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        ref = self.reference
        arrays = [_mdp_arrays(t, ref.num_states, ref.num_actions) for t in tasks]
        self._cumulative = np.cumsum(np.stack([p for p, _ in arrays]), axis=-1)
        self._rewards = np.stack([r for _, r in arrays])

    def _reset_ids(self, ids: np.ndarray) -> None:
        if ids.size:
            self._state[ids] = self._draw(ids, "integers", self.reference.num_states)

    def _step_ids(self, ids: np.ndarray, actions: np.ndarray) -> np.ndarray:
        states = self._state[ids]
        noise = self._draw(ids, "standard_normal")
        u = self._draw(ids, "random")
        reward, next_state = mdp_step(
            self._rewards[ids, states, actions], self._cumulative[ids, states, actions], noise, u
        )
        self._state[ids] = next_state
        return reward

    def _observe(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, self.reference.num_states), np.float32)
        obs[np.arange(self.num_envs), self._state] = 1.0
        return obs
