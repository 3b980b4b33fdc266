"""The task protocol on the learner's side: assigning tasks to vector envs and checking envs.

A task env is a ``gymnasium.Env`` with ``sample_tasks(n, rng)``, ``set_task(task)`` and
``get_task()`` (see :class:`metarl_envs.TaskEnv`). This module hands one task to each sub-env of
any Gymnasium ``VectorEnv`` and checks that a user's env follows the protocol.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv, VectorEnv, VectorWrapper
from gymnasium.vector.async_vector_env import AsyncState

from metarl.errors import ConfigError, EnvNotFoundError, TaskProtocolError

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


def _import_user_module(module: str) -> None:
    """Import a user's env module, looking in the current directory too (as ``python -m`` does;
    the ``metarl`` console script does not put it on ``sys.path``)."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name is None or not module.startswith(exc.name) or cwd in sys.path:
            raise
        sys.path.append(cwd)
        importlib.import_module(module)


def resolve_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id`` (importing ``module:`` first), or a one-line error."""
    given = env_id
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            _import_user_module(module)
        except ImportError as exc:
            raise EnvNotFoundError(f"env id {module}:{env_id}: cannot import {module!r} ({exc})") from None
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        raise EnvNotFoundError(unknown_env_message(given)) from None


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
    except (TypeError, ValueError) as exc:
        error = env_kwargs_error(env_id, _entry_point(env_id), kwargs, exc)
        if error is None:
            raise
        raise error from None
    except gym.error.Error as exc:
        if isinstance(exc, (gym.error.NameNotFound, gym.error.NamespaceNotFound)) or (
            "not found" in str(exc).lower() or "doesn't exist" in str(exc).lower()
        ):
            raise EnvNotFoundError(unknown_env_message(env_id)) from None
        raise
    except ModuleNotFoundError as exc:
        raise EnvNotFoundError(f"env id {env_id!r}: cannot import module {exc.name!r}") from None


_BY_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
# Arguments metarl (or Gymnasium) passes to a vector entry point itself; not env_kwargs.
_SET_BY_METARL = ("num_envs", "max_episode_steps")


def check_scoring_env(config: Any) -> None:
    """Refuse, in one line naming ``eval_env_kwargs``, a config's scoring env arguments (see
    :meth:`metarl.config.Config.scoring_env_kwargs`) that its env does not take: else they would
    fail only at the first validation or at ``evaluate``, after training."""
    if not getattr(config, "eval_env_kwargs", None):
        return
    try:
        make_env(config.env, **config.scoring_env_kwargs()).close()
    except ConfigError as e:
        raise ConfigError(f"eval_env_kwargs {config.eval_env_kwargs}: {e}") from None


def _entry_point(env_id: str) -> Callable[..., Any] | None:
    """The callable registered for ``env_id`` (its module already imported), or None."""
    try:
        creator = gym.spec(env_id.split(":", 1)[-1]).entry_point
        if isinstance(creator, str):
            creator = gym.envs.registration.load_env_creator(creator)
    except Exception:  # only for an error message: no entry point, no list of arguments
        return None
    return creator if callable(creator) else None


def _parameters(creator: Callable[..., Any]) -> tuple[list[str], bool] | None:
    """The keyword arguments ``creator`` takes, and whether that list is exact (its signature
    has no ``**kwargs``). A class whose ``__init__`` takes ``**kwargs`` is followed up its base
    classes to list what they take too; that list is not exact (the class may use the kwargs
    itself). None where inspect cannot tell."""
    is_class = isinstance(creator, type)
    chain = [c for c in creator.__mro__ if "__init__" in vars(c)] if is_class else [creator]
    names: list[str] = []
    for depth, target in enumerate(chain):
        if target is object:  # object.__init__ takes no arguments
            return names, depth == 0
        try:
            params = list(inspect.signature(target.__init__ if is_class else target).parameters.values())
        except (TypeError, ValueError):
            return (names, False) if depth else None
        if is_class:
            params = params[1:]  # self
        names += [p.name for p in params if p.kind in _BY_KEYWORD and p.name not in names]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return names, depth == 0
        if not is_class:
            return names, False
    return names, False


def env_kwargs_error(
    env_id: str,
    creator: Callable[..., Any] | None,
    env_kwargs: Mapping[str, Any],
    exc: Exception | None = None,
) -> ConfigError | None:
    """A one-line error when ``env_kwargs`` do not fit ``creator`` (the env's entry point or
    vector entry point): an argument it does not take, one it sets itself, or a required one
    missing, or a value the env refuses. Without ``exc`` only what its signature tells for sure;
    with the ``TypeError`` or ``ValueError`` that creating the env raised, also what that says.
    None when the kwargs are not the problem."""
    name = getattr(creator, "__name__", None) or "the env"
    params = _parameters(creator) if creator is not None else None
    accepted = [p for p in params[0] if p not in _SET_BY_METARL] if params else None
    text = str(exc) if exc is not None else ""
    where = f"env_kwargs for {env_id!r}"

    unknown = []
    if params is not None and params[1]:  # the signature is the whole truth
        unknown = [k for k in env_kwargs if k not in params[0]]
    unknown += [
        k
        for k in re.findall(r"unexpected keyword argument '(\w+)'", text)
        if k in env_kwargs and k not in unknown
    ]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        if accepted:
            takes = f"; {name} takes: {', '.join(accepted)}"
        elif params is not None and params[1]:
            takes = f"; {name} takes no env_kwargs"
        else:  # inspect cannot tell
            takes = ""
        return ConfigError(f"{where}: unknown argument{'s' if len(unknown) > 1 else ''} {names}{takes}")
    twice = [
        k for k in re.findall(r"multiple values for (?:keyword )?argument '(\w+)'", text) if k in env_kwargs
    ]
    if twice:
        return ConfigError(f"{where}: {name} sets {twice[0]!r} itself; remove it from env_kwargs")
    if exc is not None and "required" in text and params is not None:
        missing = [
            k
            for k in re.findall(r"'(\w+)'", text.split("required", 1)[1].split(" was raised", 1)[0])
            if k in params[0]
        ]
        if missing:
            names = ", ".join(repr(k) for k in missing)
            return ConfigError(
                f"{where}: {name} needs {names}; set {'them' if len(missing) > 1 else 'it'} "
                f"in env_kwargs (e.g. --set env_kwargs.{missing[0]}=VALUE)"
            )
    if exc is not None and env_kwargs:  # the env refused a value the user gave it
        message = " ".join(text.split(" was raised from the environment creator", 1)[0].split())
        return ConfigError(f"{where} ({dict(env_kwargs)}): {name} raised {type(exc).__name__}: {message}")
    return None


def unknown_env_message(env_id: str) -> str:
    """'unknown env id ...' with the closest registered ids; and, when the id may be a user's
    env (its namespace is not registered, or it is no typo of a registered id), how to name
    one: ``module:Namespace/Env-v0``, the module being imported first."""
    import difflib

    module, _, name = env_id.rpartition(":")
    ids = sorted(gym.registry)
    # the same name in another namespace first (e.g. HalfCheetahVel-v0 for metarl/HalfCheetahVel-v0)
    same = [i for i in ids if i != name and i.split("/")[-1] == name.split("/")[-1]]
    close = list(dict.fromkeys(same + difflib.get_close_matches(name, ids, n=3, cutoff=0.5)))[:3]
    metarl_ids = [i for i in ids if i.startswith("metarl/")]
    hint = f"did you mean {', '.join(close)}?" if close else f"metarl families: {', '.join(metarl_ids)}."
    if module:  # the module was imported and registered something else
        return f"unknown env id {env_id!r}; importing {module!r} registered no {name!r}; {hint}"
    namespace = name.split("/", 1)[0] if "/" in name else None
    typo = bool(same or difflib.get_close_matches(name, ids, n=1, cutoff=0.8))
    if not typo or (namespace is not None and namespace not in {s.namespace for s in gym.registry.values()}):
        hint += (
            f" A user's env is named module:Namespace/Env-v0, e.g. my_envs:{name} "
            "(metarl imports the module first, which registers the env)"
        )
    return f"unknown env id {env_id!r}; {hint}"


def _fail(env: Any, what: str, fix: str) -> TaskProtocolError:
    return TaskProtocolError(f"{type(env).__name__}: {_one_line(what)}. Fix: {fix}")


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _short(value: Any, limit: int = 60) -> str:
    text = _one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


_FIX_RESET = "make reset(seed=None, options=None) return (observation, info) for any seed"
_FIX_STEP = (
    "make step(action) accept every action of action_space and return "
    "(observation, reward, terminated, truncated, info)"
)


def _call(env: Any, what: str, fix: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; an exception from the user's env becomes a one-line error."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        raise _fail(env, f"{what} raised {type(exc).__name__}: {exc}", fix) from None


def _is_scalar_number(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf"


def _checked_step(env: Any, action: Any) -> tuple[Any, float, bool, bool, Any]:
    """``env.step(action)``, with a one-line error when it raises or returns something else
    than ``(observation, reward, terminated, truncated, info)`` with a number as reward."""
    result = _call(env, "step(action)", _FIX_STEP, env.step, action)
    if not isinstance(result, tuple) or len(result) != 5:
        got = f"{len(result)} values" if isinstance(result, tuple) else type(result).__name__
        raise _fail(
            env, f"step() returned {got}", "return (observation, reward, terminated, truncated, info)"
        )
    reward = result[1]
    if not _is_scalar_number(reward):
        shape = f" of shape {np.shape(reward)}" if hasattr(reward, "shape") else ""
        raise _fail(
            env,
            f"step() returned a reward of type {type(reward).__name__}{shape} ({_short(reward)})",
            "return the reward as one number (a float; e.g. float(reward) or reward.item())",
        )
    obs, _, terminated, truncated, info = result
    return obs, float(reward), bool(terminated), bool(truncated), info


def _checked_reset(env: Any, seed: int) -> Any:
    result = _call(env, f"reset(seed={seed})", _FIX_RESET, env.reset, seed=seed)
    if not isinstance(result, tuple) or len(result) != 2:
        raise _fail(env, f"reset() returned {type(result).__name__}", "return (observation, info)")
    return result


def _diagnose(env: Any, seed: int) -> None:
    """Reset and step ``env`` once; raise a one-line error naming what raised or returned wrongly."""
    _checked_reset(env, seed)
    space = getattr(env, "action_space", None)
    if space is None:
        return
    action = _call(env, "action_space.sample()", "declare action_space as a gymnasium Space", space.sample)
    _checked_step(env, action)


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
    the same seeded action sequence. Raises :class:`TaskProtocolError` naming the fix, in one
    line, also where the env itself raises (in ``reset``, ``step`` or a protocol method) or
    ``step`` returns a reward that is not a number. The checker's warnings are shown only when
    the env passes (a failure's one line says what to fix).
    """
    with warnings.catch_warnings(record=True) as caught:
        _check_task_env(env.unwrapped, num_tasks, seed, steps)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _check_task_env(base: Any, num_tasks: int, seed: int, steps: int) -> None:
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
    except Exception as exc:  # the env raised inside the checker: name reset or step if we can
        _diagnose(base, seed)
        raise _fail(
            base,
            f"gymnasium's check_env raised {type(exc).__name__}: {exc}",
            "make reset() and step() follow the Gymnasium API (see gymnasium.Env)",
        ) from None

    fix_sample = "make sample_tasks(n, rng) return a list of n tasks drawn from rng"
    tasks_a, tasks_b = (  # twice from the same seed: the tasks must come from rng alone
        _call(
            base,
            f"sample_tasks({num_tasks}, rng)",
            fix_sample,
            base.sample_tasks,
            num_tasks,
            np.random.default_rng(seed),
        )
        for _ in range(2)
    )
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
        _call(
            base,
            f"set_task({_short(task)})",
            "make set_task accept every task sample_tasks returns",
            base.set_task,
            task,
        )
        got = _call(base, "get_task()", "make get_task() return the task set by set_task", base.get_task)
        if not _same(got, task):
            raise _fail(
                base,
                f"get_task() returned {got!r} after set_task({task!r})",
                "store the task in set_task and return it from get_task",
            )
        _checked_reset(base, seed)
        base.action_space.seed(seed)
        total = []
        for _ in range(steps):
            _, reward, terminated, truncated, _ = _checked_step(base, base.action_space.sample())
            total.append(reward)
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
