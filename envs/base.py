"""The task protocol and the task values shared by the families."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from gymnasium.vector import VectorEnv


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


class TaskVectorEnv(VectorEnv):
    """Base of the families' own vector envs: every sub-env carries its own task.

    ``reference`` is a single env of the family (it samples and validates tasks). Subclasses
    turn the tasks into arrays in ``_set_task_arrays``.
    """

    reference: Any
    num_envs: int
    _tasks: list[Any]

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

    def _set_task_arrays(self, tasks: list[Any]) -> None:
        raise NotImplementedError

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
