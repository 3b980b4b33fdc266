"""Rollouts of a (possibly per-task adapted) policy on a vector env with one task per sub-env.

The sampler owns one Gymnasium ``VectorEnv`` of ``num_tasks × episodes_per_task`` sub-envs.
Sub-env ``i * episodes_per_task + j`` runs episode ``j`` of task ``i``. Every call resets all
sub-envs with fresh seeds and runs one episode in each, for at most ``horizon`` steps; steps
after an episode ended are masked out. Which vector env runs underneath (the family's own
vectorized twin, or Gymnasium's Sync/Async vector envs) is chosen here and nowhere else.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.async_vector_env import AsyncState
from metarl_envs.batched import usable_cores
from torch import Tensor

from metarl.episodes import Episodes
from metarl.errors import EnvFaultError, SamplerError, TaskProtocolError
from metarl.policies import MLPPolicy, Params
from metarl.tasks import resolve_env_id, set_tasks, task_api

log = logging.getLogger(__name__)
CPU = torch.device("cpu")  # where sampling runs, whatever the learner's device


class TaskFaultWrapper(gym.Wrapper):
    """Re-raises an exception from the env's ``reset``/``step`` with the task in force named."""

    def _fault(self, where: str, exc: Exception) -> EnvFaultError:
        try:
            task = repr(self.env.unwrapped.get_task())
        except Exception:
            task = "unknown"
        return EnvFaultError(f"{type(exc).__name__} in {where}: {exc} (task {task})")

    def reset(self, **kwargs: Any):
        try:
            return self.env.reset(**kwargs)
        except Exception as exc:
            raise self._fault("reset", exc) from exc

    def step(self, action):
        try:
            return self.env.step(action)
        except Exception as exc:
            raise self._fault("step", exc) from exc


def make_vector_env(
    env_id: str,
    num_envs: int,
    horizon: int,
    backend: str = "auto",
    num_threads: int = 0,
    **env_kwargs: Any,
) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies of ``env_id`` with ``horizon`` as time limit.

    ``backend="auto"`` uses the family's ``vector_entry_point`` when it has one, and
    ``SyncVectorEnv`` otherwise; ``"sync"`` and ``"async"`` force Gymnasium's vector envs.
    ``num_threads`` (0: the usable cores) goes to a vector entry point that takes it.
    """
    spec = resolve_env_id(env_id)
    if backend == "auto":
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    else:
        mode = backend
    kwargs = dict(env_kwargs)
    if mode == "vector_entry_point":
        creator = spec.vector_entry_point
        if isinstance(creator, str):
            creator = gym.envs.registration.load_env_creator(creator)
        if num_threads and "num_threads" in inspect.signature(creator).parameters:
            kwargs["num_threads"] = num_threads
    else:
        creator = spec.entry_point
        if isinstance(creator, str):
            creator = gym.envs.registration.load_env_creator(creator)
        # Sub-envs are checked once by check_task_env; skip the per-step passive checker.
        kwargs["disable_env_checker"] = True
        kwargs["wrappers"] = [TaskFaultWrapper]
    from metarl.tasks import env_kwargs_error

    # env_kwargs the env does not take: one line before any sub-env (or worker process) starts.
    error = env_kwargs_error(env_id, creator, env_kwargs)
    if error is not None:
        raise error
    try:
        env = gym.make_vec(
            spec.id, num_envs=num_envs, vectorization_mode=mode, max_episode_steps=horizon, **kwargs
        )
    except (TypeError, ValueError) as exc:
        error = env_kwargs_error(env_id, creator, env_kwargs, exc)
        if error is None:
            raise
        raise error from None
    log.info("sampler backend for %s: %s (%s)", env_id, mode, type(env).__name__)
    env.metarl_backend = mode
    return env


def draw_randomness(
    policy: MLPPolicy,
    num_tasks: int,
    episodes_per_task: int,
    horizon: int,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[np.ndarray, Tensor]:
    """The reset seeds [N·E] (from ``rng``) and action noise [T, N, E, ...] (from ``generator``)
    of one sampling call, drawn before any env runs."""
    seeds = rng.integers(0, 2**31 - 1, size=num_tasks * episodes_per_task)
    return seeds, policy.noise((horizon, num_tasks, episodes_per_task), generator)


@contextlib.contextmanager
def policy_threads(env: gym.vector.VectorEnv | None = None) -> Iterator[None]:
    """Run the policy on one torch thread while sampling; the previous count is restored after.

    One thread gives the policy's forward pass a fixed reduction order: BLAS kernels split a
    matrix product differently over different thread counts, and the float32 sums they return
    differ in the last bits, which a few hundred env steps turn into different episodes. On one
    thread the episodes do not depend on how many threads a process has (the Ray workers run on
    one, the driver on all cores); :func:`task_blocks` does the rest. It also costs little:
    between two env steps the forward pass is small, and idle torch worker threads would compete
    for the cores a batched engine's threads need. ``env`` is accepted for callers that pass
    the env being stepped.
    """
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: Each task's observations go through the policy as a block of a multiple of this many rows:
#: float32 rows of any width then start on a boundary of 4 × BLOCK_ROWS bytes, the vector width
#: of the CPU's kernels (32 bytes with AVX2, where 16-byte offsets were measured to change
#: nothing; 64 with AVX-512). Fewer padded rows than a fixed 32: 20 episodes take 24 rows.
BLOCK_ROWS = 16 if "AVX512" in torch.backends.cpu.get_cpu_capability() else 8
_ALIGN_BYTES = 64


def task_blocks(params: Params) -> Params:
    """Per-task ``params`` (a leading task dimension) on the CPU, one aligned block per task,
    for a forward pass whose result for a task does not depend on the other tasks in the
    call, nor on how many threads the process has. :meth:`Sampler.run` relies on it so that the
    episodes of a task are bit-identical in a batch of all tasks and in any shard of them (Ray).

    Float32 matrix products are not reproducible across such changes by themselves: BLAS (MKL)
    picks its kernel by the number of rows (one task of two episodes in a shard: two rows; all
    tasks: many), takes another code path where an operand does not start on a 16-byte
    boundary (a task's rows start wherever the tasks before it end), and splits the work
    differently over another number of threads. Each changes the last bits of the results,
    which a few hundred env steps make into different episodes. So:

    - the policy runs on one torch thread while sampling (:func:`policy_threads`);
    - each task is a block of its own: with per-task parameters, ``vmap`` over the leading
      task dimension makes every layer a batched product of per-task blocks, the same for a
      task in any call; with shared parameters, one product over all the blocks' rows (a
      faster kernel), whose rows come out alike since every block starts aligned and holds
      as many rows (at least :data:`BLOCK_ROWS`, past MKL's small-matrix paths), so the
      product's tiling is the same for every task's rows (checked for 1 to 40 tasks of 1 to
      20 episodes, 1 to 4 threads);
    - every block starts on a 64-byte boundary and has the same number of rows: each task's
      observations (and action noise) are padded with zero rows to a multiple of
      :data:`BLOCK_ROWS`, which keeps every layer's per-task block of activations a multiple of
      the kernels' vector width long (and the vectorized element-wise ops in step with the
      blocks); and each task's parameters are copied here into a slot of a fresh buffer whose
      size is a multiple of 64 bytes (a precaution: MKL's one-row kernels depend on that
      operand's alignment too).
    """
    blocks = {}
    for name, value in params.items():
        value = value.detach()
        num_tasks, size = value.shape[0], value[0].numel()
        align = _ALIGN_BYTES // value.element_size()
        buf = torch.empty(num_tasks, -(-size // align) * align, dtype=value.dtype, device=CPU)
        buf[:, :size] = value.reshape(num_tasks, size)
        blocks[name] = buf[:, :size].view(value.shape)
    return blocks


#: The most sub-envs ``backend: async`` may run: it forks one process per sub-env.
MAX_ASYNC_ENVS = 256
_GIB = 2**30


def check_spaces(env_id: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Refuse, in one line, spaces metarl's policies cannot act in or observe.

    Actions: a one-dimensional Box of floats (Gaussian policy) or Discrete (categorical policy).
    Observations reach the policy as one float32 vector per sub-env (``np.prod(shape)`` values):
    a Box of any shape, Discrete (its index, one number) or MultiBinary. A Dict, Tuple,
    MultiDiscrete, Text, Graph, ... space would be turned into garbage or fail mid-sampling.
    """

    def show(space: gym.Space) -> str:
        text = str(space)
        return text if len(text) <= 100 else text[:97] + "..."

    act_ok = isinstance(action_space, gym.spaces.Discrete) or (
        type(action_space) is gym.spaces.Box
        and len(action_space.shape) == 1
        and action_space.shape[0] > 0
        and np.issubdtype(action_space.dtype, np.floating)
    )
    if not act_ok:
        raise TaskProtocolError(
            f"{env_id}: action space {show(action_space)} is not supported; metarl's policies act "
            "in a one-dimensional Box of floats (Gaussian) or a Discrete space (categorical)"
        )
    if not isinstance(observation_space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiBinary)):
        raise TaskProtocolError(
            f"{env_id}: observation space {show(observation_space)} is not supported; observations "
            "must be a Box (any shape, flattened), Discrete or MultiBinary (wrap the env in "
            "gymnasium.wrappers.FlattenObservation to turn a Dict, Tuple or MultiDiscrete space into a Box)"
        )


def available_memory() -> int | None:
    """Bytes this process can still allocate: ``MemAvailable`` (or ``os.sysconf`` where there
    is no /proc/meminfo), lowered to the room left under a cgroup memory limit (containers);
    None when unknown."""
    avail = None
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    if avail is None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    # cgroup v2, then v1: the limit less what is in use and cannot be reclaimed (page cache can).
    for limit_file, usage_file, reclaimable in [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "inactive_file"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
            "total_inactive_file",
        ),
    ]:
        with contextlib.suppress(OSError, ValueError):
            with open(limit_file) as f:
                limit = f.read().strip()
            if limit == "max" or int(limit) >= 2**62:  # no limit
                break
            with open(usage_file) as f:
                used = int(f.read())
            with open(os.path.join(os.path.dirname(limit_file), "memory.stat")) as f:
                stat = dict(line.split() for line in f if line.count(" ") == 1)
            room = int(limit) - used + int(stat.get(reclaimable, 0))
            avail = room if avail is None else min(avail, room)
            break
    return avail


def check_batch_memory(
    env_id: str,
    num_tasks: int,
    episodes_per_task: int,
    horizon: int,
    step_bytes: int,
    sub_env_bytes: int = 0,
    batches: int = 1,
    available: int | None = None,
) -> None:
    """Refuse, in one line with the figures, sizes whose episodes cannot fit in memory.

    ``step_bytes`` is what one env step of one sub-env takes in a batch of episodes (the
    buffers and the action noise drawn up front), ``sub_env_bytes`` what one sub-env holds,
    ``batches`` how many batches of episodes are kept at once. The figure is a lower bound
    (the learner's activations and gradients come on top), so nothing that fits is refused.
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    subs = num_tasks * episodes_per_task
    need = batches * horizon * subs * step_bytes + subs * sub_env_bytes
    if need <= available:
        return
    what = "one batch of episodes" if batches == 1 else f"the {batches} batches of episodes kept at once"
    raise SamplerError(
        f"{env_id}: {num_tasks} tasks × {episodes_per_task} episodes per task × horizon {horizon} "
        f"would need at least {need / _GIB:,.1f} GiB for {what}, more than the "
        f"{available / _GIB:,.1f} GiB available; lower meta_batch_size (evaluate: --tasks), "
        "episodes_per_task (evaluate: --episodes) or horizon"
    )


def _probe_env(spec: gym.envs.registration.EnvSpec, env_kwargs: dict[str, Any]) -> gym.Env | None:
    """One single env of ``spec`` for its spaces, or None when it cannot be made (then making the
    vector env fails too and reports why)."""
    try:
        return gym.make(spec.id, disable_env_checker=True, **env_kwargs)
    except Exception as exc:
        log.debug("probe env of %s failed: %s", spec.id, exc)
        return None


def _sub_env_bytes(env: gym.Env, shared_model: bool) -> int:
    """A lower bound of the memory one sub-env holds beyond the episode buffers: for a MuJoCo
    env its ``MjData`` buffer, and its ``MjModel`` unless the batched engine shares one;
    0 for other envs (unknown)."""
    base = env.unwrapped
    parts = [getattr(base, "data", None)] + ([] if shared_model else [getattr(base, "model", None)])
    sizes = [getattr(part, "nbuffer", 0) for part in parts]
    return sum(int(n) for n in sizes if isinstance(n, (int, np.integer)))


class TaskGroupsVectorEnv(gym.vector.VectorEnv):
    """Sub-envs split into groups of whole tasks, each group a vector env of its own (for the
    MuJoCo families, its own batched engine), so that :meth:`Sampler.run` can step one group in
    a worker thread while the policy acts for the next. As a plain ``VectorEnv`` it steps the
    groups one after the other: the same results as one vector env of all sub-envs, since every
    sub-env is simulated on its own from its own seed."""

    def __init__(self, groups: list[gym.vector.VectorEnv], task_bounds: list[tuple[int, int]]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from gymnasium.vector.utils import batch_space

        self.groups, self.task_bounds = groups, task_bounds
        self._env_bounds = np.cumsum([0] + [g.num_envs for g in groups])
        first = groups[0]
        self.num_envs = int(self._env_bounds[-1])
        self.single_observation_space = first.single_observation_space
        self.single_action_space = first.single_action_space
        self.observation_space = batch_space(first.single_observation_space, self.num_envs)
        self.action_space = batch_space(first.single_action_space, self.num_envs)
        self.metadata = first.metadata
        self.num_threads = getattr(first, "num_threads", 1)
        self.metarl_backend = getattr(first, "metarl_backend", "vector_entry_point")
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metarl-physics")

    def _split(self, values: Any) -> list[Any]:
        return [values[lo:hi] for lo, hi in zip(self._env_bounds[:-1], self._env_bounds[1:], strict=True)]

    def reset(self, *, seed: Any = None, options: dict | None = None):
        seeds = (
            self._split(seed) if isinstance(seed, (list, tuple, np.ndarray)) else [seed] * len(self.groups)
        )
        obs = [g.reset(seed=s, options=options)[0] for g, s in zip(self.groups, seeds, strict=True)]
        return np.concatenate(obs), {}

    def step(self, actions: np.ndarray):
        results = [g.step(a) for g, a in zip(self.groups, self._split(actions), strict=True)]
        obs, reward, terminated, truncated = (np.concatenate([r[i] for r in results]) for i in range(4))
        return obs, reward, terminated, truncated, {}

    def submit(self, index: int, actions: np.ndarray) -> Any:
        """Step group ``index`` in the worker thread; the future's result is its ``step``'s."""
        return self._worker.submit(self.groups[index].step, actions)

    def set_tasks(self, tasks: list[Any]) -> None:
        for group, part in zip(self.groups, self._split(list(tasks)), strict=True):
            set_tasks(group, part)

    def get_tasks(self) -> list[Any]:
        from metarl.tasks import get_tasks

        return [task for group in self.groups for task in get_tasks(group)]

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        return task_api(self.groups[0]).sample_tasks(n, rng)

    def close_extras(self, **kwargs: Any) -> None:
        self._worker.shutdown(wait=True)
        for group in self.groups:
            group.close()


def pipeline_groups(requested: int, num_tasks: int, batched: bool, cores: int) -> int:
    """How many task groups a sampler pipelines: ``requested`` (1: none), or for 0 (auto) two
    when a batched engine has at least :data:`PIPELINE_MIN_CORES` cores to step one group on
    while the policy acts for the other; never more groups than tasks."""
    if requested == 0:
        requested = 2 if batched and cores >= PIPELINE_MIN_CORES else 1
    return max(1, min(requested, num_tasks))


#: ``sampler.groups: 0`` pipelines from this many usable cores on (see the README's benchmarks).
PIPELINE_MIN_CORES = 4


class EnvActions:
    """Policy actions as the env receives them: Box actions ``[..., act_dim]`` in [-1, 1] mapped
    affinely onto a bounded Box (with ``rescale``; the env clips), discrete action indices offset
    by the space's ``start``."""

    def __init__(self, space: gym.Space, rescale: bool = True) -> None:
        self.discrete = isinstance(space, gym.spaces.Discrete)
        self.start = int(space.start) if self.discrete else 0
        self.scale: Any = 1.0
        self.offset: Any = 0.0
        if rescale and isinstance(space, gym.spaces.Box) and space.is_bounded():
            low, high = space.low.astype(np.float64), space.high.astype(np.float64)
            self.scale, self.offset = (high - low) / 2.0, (high + low) / 2.0

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        if self.discrete:
            return np.asarray(actions, dtype=np.int64) + self.start
        return self.offset + self.scale * np.asarray(actions, dtype=np.float64)


class TaskSlots:
    """Tasks in a vector env of ``num_tasks × episodes_per_task`` sub-envs: sub-env
    ``i * episodes_per_task + j`` runs episode ``j`` of task ``i``."""

    env: Any
    num_tasks: int
    episodes_per_task: int
    _tasks: list[Any] | None
    #: What draws tasks: the vector env's task API.
    _task_source: Any

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        """Draw ``n`` tasks from the family's distribution."""
        return self._task_source.sample_tasks(n, rng)

    def set_tasks(self, tasks: list[Any]) -> None:
        """Give every episode slot of task ``i`` the task ``tasks[i]``."""
        if len(tasks) != self.num_tasks:
            raise ValueError(f"sampler expects {self.num_tasks} tasks, got {len(tasks)}")
        if self._tasks is not None and self._tasks == list(tasks):
            return
        set_tasks(self.env, [t for t in tasks for _ in range(self.episodes_per_task)])
        self._tasks = list(tasks)


class Sampler(TaskSlots):
    """Collects ``episodes_per_task`` episodes for each of ``num_tasks`` tasks per call."""

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        horizon: int,
        backend: str = "auto",
        env_kwargs: dict[str, Any] | None = None,
        num_threads: int = 0,
        rescale_actions: bool = True,
        batches_kept: int = 1,
        groups: int = 0,
    ) -> None:
        """``batches_kept``: how many batches of episodes the caller holds at once (a MAML
        iteration keeps ``inner.steps + 1``); the memory check counts them.

        Before the vector env is made, spaces the policies cannot act in and sizes that cannot
        fit in memory are refused in one line, and ``backend="async"`` with more than
        :data:`MAX_ASYNC_ENVS` sub-envs (one process each)."""
        self.env_id = env_id
        self.num_tasks, self.episodes_per_task, self.horizon = num_tasks, episodes_per_task, horizon
        num_envs = num_tasks * episodes_per_task
        if backend == "async" and num_envs > MAX_ASYNC_ENVS:
            raise SamplerError(
                f"{env_id}: sampler backend async runs one process per sub-env, and {num_tasks} tasks × "
                f"{episodes_per_task} episodes = {num_envs} sub-envs is more than {MAX_ASYNC_ENVS}; use "
                "backend auto or sync (all sub-envs in this process), or ray (a few processes)"
            )
        # The memory a sampling call needs depends on the observation and action sizes, which
        # only an env knows (an EnvSpec has no spaces). One single env is cheap whatever the
        # sizes asked for, while the vector env of a huge batch could itself exhaust memory (or
        # fork thousands of processes): so a probe env gives the spaces, which are checked, and
        # the estimate is checked before the vector env exists.
        spec = resolve_env_id(env_id)
        probe = _probe_env(spec, env_kwargs or {})
        if probe is None:  # the vector env will say what is wrong; bound the sizes meanwhile
            obs_dim, act_bytes, sub_env_bytes = 1, 4, 0
        else:
            try:
                check_spaces(env_id, probe.observation_space, probe.action_space)
                obs_dim = int(np.prod(probe.observation_space.shape))
                discrete = isinstance(probe.action_space, gym.spaces.Discrete)
                act_bytes = 8 if discrete else 4 * int(np.prod(probe.action_space.shape))
                batched = backend == "vector_entry_point" or (
                    backend == "auto" and spec.vector_entry_point is not None
                )
                sub_env_bytes = _sub_env_bytes(probe, shared_model=batched)
            finally:
                probe.close()
        # Per env step of one sub-env: observation, action, reward and mask in the episode
        # buffers (float32; int64 action indices) and the action noise drawn up front (as large
        # as the actions).
        check_batch_memory(
            env_id,
            num_tasks,
            episodes_per_task,
            horizon,
            step_bytes=4 * obs_dim + 2 * act_bytes + 8,
            sub_env_bytes=sub_env_bytes,
            batches=batches_kept,
        )
        self.env = self._make_env(backend, num_threads, groups, env_kwargs or {})
        try:
            check_spaces(env_id, self.env.single_observation_space, self.env.single_action_space)
        except TaskProtocolError:
            self.close()
            raise
        self.backend = self.env.metarl_backend
        self.obs_dim = int(np.prod(self.env.single_observation_space.shape))
        space = self.env.single_action_space
        #: Discrete action spaces get a categorical policy with ``act_dim`` = the number of actions.
        self.discrete = isinstance(space, gym.spaces.Discrete)
        self.act_dim = int(space.n) if self.discrete else int(np.prod(space.shape))
        self.env_actions = EnvActions(space, rescale_actions)
        self._tasks: list[Any] | None = None
        self._task_source = task_api(self.env, env_id, **(env_kwargs or {}))

    def _make_env(
        self, backend: str, num_threads: int, groups: int, env_kwargs: dict[str, Any]
    ) -> gym.vector.VectorEnv:
        """One vector env of every sub-env, or (pipelining) a :class:`TaskGroupsVectorEnv` of
        groups of whole tasks when the family has a batched engine (``groups``: 0 = auto)."""
        N, E = self.num_tasks, self.episodes_per_task
        spec = resolve_env_id(self.env_id)
        creator = spec.vector_entry_point
        if isinstance(creator, str):
            creator = gym.envs.registration.load_env_creator(creator)
        # An engine that steps on threads of its own (it takes num_threads) can run while the
        # policy acts; NumPy twins hold the GIL, so grouping them would gain nothing.
        batched = (
            creator is not None
            and backend in ("auto", "vector_entry_point")
            and "num_threads" in inspect.signature(creator).parameters
        )
        cores = num_threads or usable_cores()
        count = pipeline_groups(groups, N, batched, cores) if batched else 1
        if count == 1:
            return make_vector_env(self.env_id, N * E, self.horizon, backend, num_threads, **env_kwargs)
        bounds = [(int(part[0]), int(part[-1]) + 1) for part in np.array_split(np.arange(N), count)]
        envs: list[gym.vector.VectorEnv] = []
        try:
            for lo, hi in bounds:
                envs.append(
                    make_vector_env(
                        self.env_id, (hi - lo) * E, self.horizon, backend, num_threads, **env_kwargs
                    )
                )
        except BaseException:
            for env in envs:
                env.close()
            raise
        return TaskGroupsVectorEnv(envs, bounds)

    def sample(
        self,
        policy: MLPPolicy,
        params: Params,
        rng: np.random.Generator,
        generator: torch.Generator,
        per_task_params: bool = False,
    ) -> Episodes:
        """Run one episode in every sub-env with π_params.

        Every sub-env is reset with its own seed drawn from ``rng``; ``generator`` draws the
        action noise of every sub-env and step up front. With ``per_task_params`` every tensor
        of ``params`` has a leading task dimension.
        """
        seeds, noise = draw_randomness(
            policy, self.num_tasks, self.episodes_per_task, self.horizon, rng, generator
        )
        return self.run(policy, params, per_task_params, seeds, noise)

    def run(
        self, policy: MLPPolicy, params: Params, per_task_params: bool, seeds: np.ndarray, noise: Tensor
    ) -> Episodes:
        """The rollout of :meth:`sample` from given reset ``seeds`` [N·E] and action ``noise``
        [T, N, E, ...]: the same seeds and noise give the same episodes, whichever process runs
        them. Entries after a sub-env's episode ended are zero (and masked).

        The episodes are bit-identical however the tasks are split across processes (the Ray
        sampler runs contiguous shards of them with the matching slices of ``seeds`` and
        ``noise``) or across the groups of a pipelined sampler, and whatever number of torch
        threads the process has: the policy's forward pass computes every task's actions in the
        same order of operations, whichever other tasks share the call (see :func:`task_blocks`).

        With groups (:class:`TaskGroupsVectorEnv`), one group's step (the physics, on the
        engine's threads, without the GIL) runs in a worker thread while the policy acts for the
        next group: the physics threads do not wait on Python between two steps.
        """
        N, E, T = self.num_tasks, self.episodes_per_task, self.horizon
        # Sampling runs on the CPU whatever the learner's device (explicit devices throughout).
        obs_buf = torch.zeros(T, N, E, self.obs_dim, device=CPU)
        act_buf = torch.zeros(T, N, E, *policy.action_shape, dtype=policy.action_dtype, device=CPU)
        rew_buf = torch.zeros(T, N, E, device=CPU)
        mask_buf = torch.zeros(T, N, E, device=CPU)
        noise = noise.to(CPU)
        grouped = isinstance(self.env, TaskGroupsVectorEnv)
        envs = self.env.groups if grouped else [self.env]
        bounds = self.env.task_bounds if grouped else [(0, N)]
        if per_task_params:  # each group's slice of the per-task blocks, made once per call
            blocks = task_blocks(params)
            group_params = [{k: v[lo:hi] for k, v in blocks.items()} for lo, hi in bounds]
        else:
            params = {k: v.detach().to(CPU) for k, v in params.items()}
        rows = -(-E // BLOCK_ROWS) * BLOCK_ROWS  # each task's rows, padded with zeros
        obs_blocks = [torch.zeros(hi - lo, rows, self.obs_dim, device=CPU) for lo, hi in bounds]
        noise_blocks = [
            torch.zeros(hi - lo, rows, *noise.shape[3:], dtype=noise.dtype, device=CPU) for lo, hi in bounds
        ]
        latest: list[Any] = []
        for env, (lo, hi) in zip(envs, bounds, strict=True):
            try:
                latest.append(env.reset(seed=[int(s) for s in seeds[lo * E : hi * E]])[0])
            except Exception as exc:
                raise self._fault("reset", exc, lo) from exc
        alive = np.ones(N * E, dtype=bool)

        def act(g: int, t: int) -> tuple[Tensor, Tensor]:
            lo, hi = bounds[g]
            o = torch.as_tensor(np.asarray(latest[g], dtype=np.float32), device=CPU).view(hi - lo, E, -1)
            obs_blocks[g][:, :E], noise_blocks[g][:, :E] = o, noise[t, lo:hi]
            if per_task_params:
                dist = policy.dist(group_params[g], obs_blocks[g], task_dim=0)
            else:  # one product over every task's (aligned, equally padded) rows
                flat = policy.dist(params, obs_blocks[g].view((hi - lo) * rows, -1))
                dist = tuple(x.view(hi - lo, rows, *x.shape[1:]) for x in flat)
            actions = policy.act(dist, noise_blocks[g])[:, :E]
            return o, actions

        def finish(job: tuple[int, int, Tensor, Tensor, Any]) -> None:
            """Wait for a group's step and record it (entries after an episode's end stay 0)."""
            g, t, o, actions, result = job
            lo, hi = bounds[g]
            try:
                latest[g], reward, terminated, truncated, _ = result.result() if grouped else result
            except Exception as exc:
                raise self._fault(f"step {t}", exc, lo) from exc
            alive_g = alive[lo * E : hi * E]
            alive_t = torch.as_tensor(alive_g, dtype=torch.float32, device=CPU).view(hi - lo, E)
            obs_buf[t, lo:hi] = o * alive_t.unsqueeze(-1)
            shape = (hi - lo, E, *([1] * len(policy.action_shape)))
            act_buf[t, lo:hi] = actions * alive_t.view(shape).to(actions.dtype)
            reward_t = torch.as_tensor(np.asarray(reward, dtype=np.float32), device=CPU)
            rew_buf[t, lo:hi] = reward_t.view(hi - lo, E) * alive_t
            mask_buf[t, lo:hi] = alive_t
            alive_g &= ~(np.asarray(terminated) | np.asarray(truncated))

        def submit(g: int, t: int, o: Tensor, actions: Tensor) -> tuple[int, int, Tensor, Tensor, Any]:
            lo, hi = bounds[g]
            env_actions = self.env_actions(actions.reshape((hi - lo) * E, *policy.action_shape).numpy())
            if grouped:  # runs while the policy acts for the next group
                return g, t, o, actions, self.env.submit(g, env_actions)
            try:
                return g, t, o, actions, envs[g].step(env_actions)
            except Exception as exc:
                raise self._fault(f"step {t}", exc, lo) from exc

        steps, pending = 0, None
        with policy_threads(self.env), torch.no_grad():
            for t in range(T):
                for g in range(len(envs)):
                    if pending is not None and pending[0] == g:  # this group's last step first
                        finish(pending)
                        pending = None
                    if g == 0 and t > 0 and pending is None and not alive.any():
                        break
                    o, actions = act(g, t)
                    if pending is not None:
                        finish(pending)
                        pending = None
                        if g == 0 and not alive.any():
                            break
                    pending = submit(g, t, o, actions)
                else:
                    steps = t + 1
                    continue
                break
            if pending is not None:
                finish(pending)
        return Episodes(obs_buf[:steps], act_buf[:steps], rew_buf[:steps], mask_buf[:steps])

    def _fault(self, where: str, exc: Exception, first_task: int = 0) -> SamplerError:
        """A one-line error for a failure inside the vector env, naming env id and task(s);
        ``first_task``: the task of the failing (group) env's first sub-env."""
        if isinstance(exc, (EOFError, BrokenPipeError, ConnectionError)):
            what = f"a vector-env worker process died during {where} ({type(exc).__name__})"
        elif isinstance(exc, EnvFaultError):
            what = f"the env failed during {where}: {exc}"
        else:
            what = f"the env failed during {where}: {type(exc).__name__}: {exc}"
        ids = getattr(exc, "ids", None)  # mujoco.batch names the failed simulations
        tasks = self._tasks or []
        if ids is not None and tasks:
            named = sorted({repr(tasks[first_task + int(i) // self.episodes_per_task]) for i in ids})
            what += f" (task {', '.join(named[:3])})"
        elif "(task " not in what and tasks:
            shown = tasks[first_task : first_task + 2]
            what += f" (tasks of this batch: {', '.join(repr(t) for t in shown)}, ...)"
        return SamplerError(f"{self.env_id}: {what}")

    def close(self) -> None:
        """Close the vector env. Worker processes with a call still pending (sampling was
        interrupted, or a worker died) are terminated rather than waited for."""
        inner = self.env.unwrapped
        pending = isinstance(inner, gym.vector.AsyncVectorEnv) and inner._state != AsyncState.DEFAULT
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "close while waiting for a pending call": we know
                self.env.close(terminate=True) if pending else self.env.close()
        except Exception as exc:  # a dead worker must not hide the error that killed it
            processes = getattr(inner, "processes", [])
            for process in processes:  # workers a signal is ending: give them a moment
                process.join(timeout=1.0)
            alive = [p for p in processes if p.is_alive()]
            # Workers that a signal to the process group already ended: nothing to report.
            report = log.warning if alive or not processes else log.debug
            report("closing the vector env failed: %s", " ".join(str(exc).split()) or type(exc).__name__)
            for process in alive:
                process.terminate()
            inner.closed = True  # nothing left to close at exit
