"""The task protocol and the task values shared by the families."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


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
