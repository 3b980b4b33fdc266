"""The task protocol, the task values shared by the families, and the base of their vector envs."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


@runtime_checkable
class TaskEnv(Protocol):
    """What a meta-RL task env adds to ``gymnasium.Env``.

    A task is a small, picklable, printable value (a frozen dataclass here). ``sample_tasks``
    must draw only from ``rng`` so that a seed fixes the tasks; ``set_task`` takes effect from
    the next ``reset``/``step`` on, and ``get_task`` returns the task in force.
    """

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]: ...

    def set_task(self, task: Any) -> None: ...

    def get_task(self) -> Any: ...


@dataclass(frozen=True)
class GoalTask:
    """A goal position to reach."""

    goal: tuple[float, ...]


@dataclass(frozen=True)
class VelocityTask:
    """A target forward velocity."""

    velocity: float


@dataclass(frozen=True)
class DirectionTask:
    """A running direction: +1 forward, -1 backward."""

    direction: int


def check_n(n: int) -> int:
    """Validate the task count given to ``sample_tasks``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"sample_tasks: n must be a non-negative int, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class PhysicsTask:
    """Multipliers of a MuJoCo model's physics parameters, one per entry (flattened, row-major).

    The family's nominal value of every entry is multiplied by the matching factor.
    """

    body_mass: tuple[float, ...]
    body_inertia: tuple[float, ...]
    dof_damping: tuple[float, ...]
    geom_friction: tuple[float, ...]


# --- helpers shared by the families -----------------------------------------------------------
def refuse_forward_reward_weight(name: str, kwargs: dict[str, Any]) -> None:
    """Refuse Gymnasium's ``forward_reward_weight``, which a family whose reward comes from its
    task would otherwise ignore."""
    if "forward_reward_weight" in kwargs:
        raise ValueError(
            f"{name} computes its reward from the task, so forward_reward_weight="
            f"{kwargs['forward_reward_weight']!r} would not be used; remove it"
        )


def init_kwargs(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``cls.__init__`` runs with when given ``kwargs``: its defaults,
    updated by ``kwargs``.

    A family reads its Gymnasium base env's settings (reset noise, healthy ranges, ...) from here
    rather than from the private attributes that env keeps them in.
    """
    parameters = inspect.signature(cls.__init__).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return defaults | kwargs


# The reward and health functions of the families take NumPy arrays (the single envs and the
# batched MuJoCo engine, float64) or torch tensors (the MuJoCo Warp engine, float32 on its
# device): they use only operators and methods both share, and these two helpers.
def isfinite(x: Any) -> Any:
    """Elementwise finiteness of a NumPy array or a torch tensor."""
    return x.isfinite() if hasattr(x, "isfinite") else np.isfinite(x)


def full_flags(like: Any, value: bool) -> Any:
    """Boolean flags set to ``value``, shaped like ``like`` (a NumPy array or a torch tensor)."""
    if hasattr(like, "new_full"):
        return like.new_full(like.shape, value, dtype=bool)
    return np.full(np.shape(like), value, dtype=bool)


def control_cost(actions: Any, weight: float) -> Any:
    """``weight * ||a||^2`` over the last axis: a scalar for one action, one cost per row of a
    batch of actions (the operations of Gymnasium's ``control_cost``)."""
    return weight * (actions * actions).sum(axis=-1)


# --- the families' vector envs ----------------------------------------------------------------
class TaskVectorEnv(VectorEnv):
    """Base of the families' own vector envs: every sub-env carries its own task and random
    generator, and this class keeps Gymnasium's ``NEXT_STEP`` autoreset, as ``SyncVectorEnv`` of
    the single env (in a ``TimeLimit``) keeps it.

    The step after a sub-env's episode ends (terminated, or ``max_episode_steps`` reached) resets
    that sub-env instead of stepping it: its action is ignored, and it returns the reset
    observation with reward 0 and neither flag set.

    ``reference`` is a single env of the family (it samples and validates tasks). A family says
    how its tasks become arrays (``_set_task_arrays``), how actions are taken in (``_actions``),
    how sub-envs are reset (``_reset_ids``) and advanced (``_advance``), and what they observe
    (``_observe``).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    reference: Any
    max_episode_steps: int | None
    _tasks: list[Any]
    _rngs: list[np.random.Generator]
    _elapsed: np.ndarray
    _autoreset: np.ndarray

    def _setup(self, reference: Any, num_envs: int, max_episode_steps: int | None) -> None:
        """Spaces from ``reference``, one generator per sub-env, the reference's task everywhere
        and the autoreset counters. A subclass calls it first in ``__init__`` (not ``__init__``
        itself: metarl reads a vector env's arguments from its ``__init__`` signatures), then
        ``self.set_tasks(self.get_tasks())`` once its task arrays can be made."""
        self.reference = reference
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = reference.observation_space
        self.single_action_space = reference.action_space
        self.observation_space = batch_space(reference.observation_space, num_envs)
        self.action_space = batch_space(reference.action_space, num_envs)
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self._elapsed = self._zeros(num_envs, "int64")
        self._autoreset = self._zeros(num_envs, "bool")
        self._tasks = [reference.get_task()] * num_envs

    # --- the task protocol, per sub-env ---------------------------------------------------------
    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        return self.reference.sample_tasks(n, rng)

    def set_tasks(self, tasks: list[Any]) -> None:
        """Give sub-env ``i`` the task ``tasks[i]``."""
        if len(tasks) != self.num_envs:
            raise ValueError(f"set_tasks: got {len(tasks)} tasks for {self.num_envs} envs")
        self._validate_tasks(list(tasks))
        self._set_task_arrays(list(tasks))
        self._tasks = list(tasks)

    def get_tasks(self) -> list[Any]:
        return list(self._tasks)

    def _validate_tasks(self, tasks: list[Any]) -> None:
        """Raise on a task the family does not accept (``_set_task_arrays`` may check too)."""

    def per_env_seeds(self, seed: int | list[int | None] | None) -> list[int | None]:
        """``reset``'s seed argument as one seed per sub-env, as ``SyncVectorEnv`` spreads it
        (an int ``s`` gives ``s, s + 1, ...``)."""
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset: got {len(seeds)} seeds for {self.num_envs} envs")
        return seeds

    # --- the arrays an engine computes with: NumPy here; the MuJoCo Warp engine's are torch
    # tensors on its device ---------------------------------------------------------------------
    def _zeros(self, n: int, dtype: str) -> Any:
        """``n`` zeros (False for ``"bool"``) of ``dtype``, a NumPy dtype name."""
        return np.zeros(n, dtype=dtype)

    def _where(self, condition: Any, x: Any, y: Any) -> Any:
        """``x`` where ``condition`` holds, else ``y`` (``np.where``)."""
        return np.where(condition, x, y)

    # --- what a family defines ------------------------------------------------------------------
    def _set_task_arrays(self, tasks: list[Any]) -> None:
        """Turn the tasks (one per sub-env) into the arrays the family computes with."""
        raise NotImplementedError

    def _actions(self, actions: Any) -> np.ndarray:
        """The batch of actions as the sub-envs take them (clipped, or checked)."""
        raise NotImplementedError

    def _reset_ids(self, ids: np.ndarray) -> None:
        """Reset the state of sub-envs ``ids``, drawing from their generators ``self._rngs[i]``."""
        raise NotImplementedError

    def _advance(self, actions: np.ndarray, restart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step every sub-env except those where ``restart`` is set, which ``_reset_ids`` resets
        instead; return the reward and the termination flag of every sub-env (the entries of
        the restarted ones are discarded)."""
        raise NotImplementedError

    def _observe(self) -> np.ndarray:
        """The batch of observations of the current states."""
        raise NotImplementedError

    # --- Gymnasium's VectorEnv API, with NEXT_STEP autoreset ------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Reset the sub-envs selected by ``options["reset_mask"]`` (all without it); a sub-env
        given a seed gets a new generator from it, one given None keeps drawing from its own."""
        seeds = self.per_env_seeds(seed)
        ids = np.arange(self.num_envs)
        if options and "reset_mask" in options:
            mask = options["reset_mask"]
            mask = mask.cpu() if hasattr(mask, "cpu") else mask  # a torch tensor on a GPU
            ids = np.flatnonzero(np.asarray(mask, dtype=bool))
        for i in ids:
            if seeds[i] is not None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        self._reset_ids(ids)
        self._elapsed[ids] = 0
        self._autoreset[ids] = False
        return self._observe(), {}

    def step(self, actions):
        actions = self._actions(actions)
        restart = self._autoreset  # the sub-envs whose episode ended last step (replaced below)
        reward, terminated = self._advance(actions, restart)
        self._elapsed = self._where(restart, 0, self._elapsed + 1)
        truncated = self._zeros(self.num_envs, "bool")
        if self.max_episode_steps is not None:
            truncated = self._elapsed >= self.max_episode_steps
        reward = self._where(restart, 0.0, reward)
        terminated = terminated & ~restart
        truncated = truncated & ~restart
        self._autoreset = terminated | truncated
        return self._observe(), reward, terminated, truncated, {}
