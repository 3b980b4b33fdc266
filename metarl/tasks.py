"""The task protocol on the learner's side: assigning tasks to vector envs and checking envs.

A task env is a ``gymnasium.Env`` with ``sample_tasks(n, rng)``, ``set_task(task)`` and
``get_task()`` (see :class:`metarl_envs.TaskEnv`). This module hands one task to each sub-env of
any Gymnasium ``VectorEnv`` and checks that a user's env follows the protocol.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv, VectorEnv, VectorWrapper
from gymnasium.vector.async_vector_env import AsyncState

from metarl.errors import EnvNotFoundError, TaskProtocolError

PROTOCOL_METHODS = ("sample_tasks", "set_task", "get_task")


def _innermost_vector_env(vector_env: VectorEnv) -> VectorEnv:
    while isinstance(vector_env, VectorWrapper):
        vector_env = vector_env.env
    return vector_env


def set_tasks(vector_env: VectorEnv, tasks: Sequence[Any]) -> None:
    """Give sub-env ``i`` of ``vector_env`` the task ``tasks[i]``.

    Works on vector envs that define ``set_tasks`` (metarl's own), on ``SyncVectorEnv`` and on
    ``AsyncVectorEnv`` (one ``set_task`` call per worker, each with its own task), also when
    they are wrapped in ``VectorWrapper``s.
    """
    env = _innermost_vector_env(vector_env)
    if len(tasks) != env.num_envs:
        raise ValueError(f"set_tasks: got {len(tasks)} tasks for a vector env of {env.num_envs}")
    tasks = list(tasks)
    if hasattr(env, "set_tasks"):
        env.set_tasks(tasks)
    elif isinstance(env, SyncVectorEnv):
        for sub_env, task in zip(env.envs, tasks, strict=True):
            sub_env.get_wrapper_attr("set_task")(task)
    elif isinstance(env, AsyncVectorEnv):
        # AsyncVectorEnv.call sends the same arguments to every worker; send one task each
        # through the same "_call" command and collect the replies with call_wait.
        env._assert_is_running()
        if env._state != AsyncState.DEFAULT:
            raise RuntimeError("set_tasks: the AsyncVectorEnv has a call pending")
        for pipe, task in zip(env.parent_pipes, tasks, strict=True):
            pipe.send(("_call", ("set_task", (task,), {})))
        env._state = AsyncState.WAITING_CALL
        env.call_wait()
    else:
        raise TypeError(
            f"set_tasks: {type(env).__name__} is neither SyncVectorEnv nor AsyncVectorEnv and has "
            "no set_tasks(tasks) method; add one to give each sub-env its task"
        )


def get_tasks(vector_env: VectorEnv) -> list[Any]:
    """The task of every sub-env of ``vector_env``, in sub-env order."""
    env = _innermost_vector_env(vector_env)
    if hasattr(env, "get_tasks"):
        return list(env.get_tasks())
    return list(env.call("get_task"))


def task_api(env: gym.Env | VectorEnv, env_id: str | None = None, **env_kwargs: Any) -> Any:
    """The object whose ``sample_tasks`` draws tasks in this process: the unwrapped env, the
    vector env itself, its first sub-env, or (for ``AsyncVectorEnv``, whose envs live in other
    processes) a local env made from ``env_id``."""
    if not isinstance(env, VectorEnv):
        return env.unwrapped
    inner = _innermost_vector_env(env)
    if hasattr(inner, "sample_tasks"):
        return inner
    if isinstance(inner, SyncVectorEnv):
        return inner.envs[0].unwrapped
    if env_id is not None:
        return make_env(env_id, **env_kwargs).unwrapped
    raise TaskProtocolError(f"{type(inner).__name__} has no sample_tasks(n, rng); pass env_id")


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with a one-line error that lists close ids when ``env_id`` is unknown.

    ``env_id`` may be ``"module:Namespace/Env-v0"``: the module is imported first, so a user's
    env registered in their own module needs no change in metarl.
    """
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        if isinstance(exc, (gym.error.NameNotFound, gym.error.NamespaceNotFound)) or (
            "not found" in str(exc).lower() or "doesn't exist" in str(exc).lower()
        ):
            raise EnvNotFoundError(unknown_env_message(env_id)) from None
        raise
    except ModuleNotFoundError as exc:
        raise EnvNotFoundError(f"env id {env_id!r}: cannot import module {exc.name!r}") from None


def unknown_env_message(env_id: str) -> str:
    """'unknown env id ...' with the closest registered ids."""
    import difflib

    name = env_id.split(":", 1)[-1]
    ids = sorted(gym.registry)
    close = difflib.get_close_matches(name, ids, n=3, cutoff=0.5)
    metarl_ids = [i for i in ids if i.startswith("metarl/")]
    hint = f"did you mean {', '.join(close)}?" if close else f"metarl families: {', '.join(metarl_ids)}"
    return f"unknown env id {env_id!r}; {hint}"


def _fail(env: Any, what: str, fix: str) -> TaskProtocolError:
    return TaskProtocolError(f"{type(env).__name__}: {what}. Fix: {fix}")


def _same(a: Any, b: Any) -> bool:
    try:
        equal = a == b
        if isinstance(equal, np.ndarray):
            return bool(equal.all())
        return bool(equal)
    except Exception:
        return pickle.dumps(a) == pickle.dumps(b)


def _observation_mismatch(env: gym.Env) -> str:
    """What a reset observation is, beside the declared space (for the checker's message)."""
    try:
        obs, _ = env.reset(seed=0)
    except Exception as exc:  # the checker already reset it once; report rather than fail here
        return f"reset() raised {type(exc).__name__}"
    arr = np.asarray(obs)
    return f"reset() returned shape {arr.shape} {arr.dtype}, observation_space is {env.observation_space}"


def check_task_env(env: gym.Env, *, num_tasks: int = 4, seed: int = 0, steps: int = 5) -> None:
    """Check that ``env`` is a valid Gymnasium env and follows the task protocol.

    Runs ``gymnasium.utils.env_checker.check_env`` on the unwrapped env, then checks that
    ``sample_tasks``, ``set_task`` and ``get_task`` exist; that ``sample_tasks(n, rng)`` returns
    ``n`` picklable tasks drawn from ``rng`` alone (the same seed gives the same tasks); that
    ``get_task`` returns what ``set_task`` set; and that different tasks change the rewards of
    the same seeded action sequence. Raises :class:`TaskProtocolError` naming the fix.
    """
    base = env.unwrapped
    for name in PROTOCOL_METHODS:
        if not callable(getattr(base, name, None)):
            raise _fail(
                base,
                f"missing method {name}()",
                "define sample_tasks(n, rng), set_task(task) and get_task() on the env class",
            )
    try:
        check_env(base, skip_render_check=True)
    except AssertionError as exc:
        if "observation space" in str(exc):
            raise _fail(
                base,
                f"observations do not match the observation space ({_observation_mismatch(base)})",
                "declare observation_space with the shape, dtype and bounds that reset() and step() return",
            ) from None
        raise _fail(
            base, f"fails gymnasium's check_env: {exc}", "fix what gymnasium's check_env reports"
        ) from None

    tasks_a = base.sample_tasks(num_tasks, np.random.default_rng(seed))
    tasks_b = base.sample_tasks(num_tasks, np.random.default_rng(seed))
    if not isinstance(tasks_a, (list, tuple)) or len(tasks_a) != num_tasks:
        raise _fail(
            base,
            f"sample_tasks({num_tasks}, rng) returned {type(tasks_a).__name__} "
            f"of length {len(tasks_a) if hasattr(tasks_a, '__len__') else '?'}",
            "return a list of exactly n tasks",
        )
    for task in tasks_a:
        try:
            if not _same(pickle.loads(pickle.dumps(task)), task):
                raise pickle.PicklingError("round trip changed the task")
        except Exception as exc:
            raise _fail(
                base,
                f"task {task!r} is not picklable ({exc})",
                "use plain values for tasks (floats, tuples, frozen dataclasses)",
            ) from None

    if not all(_same(a, b) for a, b in zip(tasks_a, tasks_b, strict=True)):
        raise _fail(
            base,
            "sample_tasks gives different tasks for the same seed",
            "draw every random number from the rng argument, not from np.random or random",
        )
    rewards = []
    for task in tasks_a[:2]:
        base.set_task(task)
        got = base.get_task()
        if not _same(got, task):
            raise _fail(
                base,
                f"get_task() returned {got!r} after set_task({task!r})",
                "store the task in set_task and return it from get_task",
            )
        base.reset(seed=seed)
        base.action_space.seed(seed)
        total = []
        for _ in range(steps):
            _, reward, terminated, truncated, _ = base.step(base.action_space.sample())
            total.append(float(reward))
            if terminated or truncated:
                break
        rewards.append(total)
    if len(tasks_a) >= 2 and not _same(tasks_a[0], tasks_a[1]) and rewards[0] == rewards[1]:
        raise _fail(
            base,
            f"set_task does not change the reward: tasks {tasks_a[0]!r} and {tasks_a[1]!r} "
            "gave the same rewards for the same seeded actions",
            "make the reward (or dynamics) in step() depend on the task set by set_task",
        )
