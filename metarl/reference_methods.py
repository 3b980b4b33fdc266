"""The MAML paper's baselines, judged by the same fine-tuning protocol as the meta-learners.

* ``random``: a freshly initialised policy (seeded), fine-tuned with the same k PG steps.
* ``pretrained``: one policy trained by Stable-Baselines3 PPO on the whole family, with a fresh
  random task at every reset and no task in the observation. Its actor (same network size and
  activation as the meta-policy) is copied into metarl's policy class, so ``metarl evaluate``
  fine-tunes it exactly as it fine-tunes MAML.
* ``oracle``: SB3 PPO that sees the task (a wrapper appends it to the observation); its
  return on each held-out task is the ceiling of the normalized score.

Each is a run directory: ``config.yaml``, ``checkpoint.pt`` (``method`` names the baseline) and,
for PPO, ``ppo.zip`` (the SB3 model). The oracle's ``ppo.zip`` is read without unpickling: only its
parameters are loaded (``weights_only=True``) into a PPO model rebuilt from the config.

A PPO baseline saves its progress after every PPO update (``ppo-resume.pt``: parameters, Adam's
state and the step count, tensors and plain values only), so an interrupted one continues with
``metarl baseline --resume DIR`` instead of starting again. The continuation is not bit-identical
to an unbroken run: the episodes in progress at the interruption start afresh, and the random
streams are re-seeded from the seed and the step count.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from tqdm import tqdm

from metarl.config import Config, given_keys
from metarl.errors import MetarlError
from metarl.policies import MLPPolicy
from metarl.runs import PPO_RESUME
from metarl.tasks import make_env, resolve_env_id

BASELINES = ("random", "pretrained", "oracle")
PPO_FILE = "ppo.zip"
#: SB3 VecNormalize's epsilon: observations are scaled by sqrt(var + epsilon).
NORMALIZATION_EPSILON = 1e-8
#: What ``metarl baseline --resume DIR --set KEY=VALUE`` may change: the threads and how the envs
#: are stepped, which train the same policy (the episodes do not depend on them).
BASELINE_RESUME_KEYS = ("num_threads", "ppo.vec_env", "sampler.num_threads")
#: The PPO envs' task streams: SeedSequence([seed, TASK_STREAM]) gives each env its own.
TASK_STREAM = 0x7A5C


def task_vector(task: Any) -> np.ndarray:
    """A task's numbers, flattened in field order (for the oracle's observation)."""
    if dataclasses.is_dataclass(task):
        parts = [task_vector(getattr(task, f.name)) for f in dataclasses.fields(task)]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.asarray(task, dtype=np.float64).ravel()


class RandomTaskEachReset(gym.Wrapper):
    """Draws a new task from the family at every reset (from its own seeded generator)."""

    def __init__(self, env: gym.Env, seed: int) -> None:
        super().__init__(env)
        self._task_rng = np.random.default_rng(seed)

    def reset(self, **kwargs: Any):
        base = self.env.unwrapped
        base.set_task(base.sample_tasks(1, self._task_rng)[0])
        return self.env.reset(**kwargs)


def with_task(observations: np.ndarray, tasks: np.ndarray) -> np.ndarray:
    """Observations ``[n, ...]`` with each row's task numbers ``[n, k]`` appended, as float32:
    what the oracle sees, for one env (:class:`TaskInObservation`) or a batch of sub-envs."""
    n = observations.shape[0]
    return np.concatenate([np.reshape(observations, (n, -1)), tasks], axis=1).astype(np.float32)


class TaskInObservation(gym.ObservationWrapper):
    """Appends the current task's numbers to the observation (the oracle's view)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        size = task_vector(env.unwrapped.get_task()).size
        space = env.observation_space
        low = np.concatenate([np.ravel(space.low), np.full(size, -np.inf)]).astype(np.float32)
        high = np.concatenate([np.ravel(space.high), np.full(size, np.inf)]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        task = task_vector(self.env.unwrapped.get_task())
        return with_task(np.ravel(observation)[None], task[None])[0]


def _unit_actions(env: gym.Env, config: Config) -> gym.Env:
    """PPO acts in [−1, 1]ᵈ, as metarl's policies do, when the config rescales actions: SB3
    samples a unit-std Gaussian at the start, which on a narrow Box (navigation's ±0.1) would be
    clipped almost always."""
    space = env.action_space
    if config.policy.rescale_actions and isinstance(space, gym.spaces.Box) and space.is_bounded():
        unit = np.ones(space.shape, dtype=space.dtype)
        return gym.wrappers.RescaleAction(env, -unit, unit)
    return env


def _ppo_env(config: Config, seed: int, oracle: bool) -> gym.Env:
    env_id = resolve_env_id(config.env).id  # imports a user's module:, from the cwd too
    env = _unit_actions(make_env(env_id, max_episode_steps=config.horizon, **config.env_kwargs), config)
    if oracle:
        env = TaskInObservation(env)
    return RandomTaskEachReset(env, seed)


def _sb3() -> Any:
    try:
        import stable_baselines3
    except ImportError:
        raise MetarlError(
            "the pretrained and oracle baselines need Stable-Baselines3: pip install 'metarl[baselines]'"
        ) from None
    return stable_baselines3


@dataclasses.dataclass
class PPOProgress:
    """How far a PPO baseline has come: its target, and the env steps its last saved state
    (``ppo-resume.pt``) holds, ``None`` before the first update. Read by the CLI to say how an
    interrupted run continues."""

    kind: str
    out_dir: Path
    timesteps: int
    saved_timesteps: int | None = None
    #: The command that runs it again when nothing of this run was saved.
    restart: str = ""
    #: The command that continues it from its saved state.
    resume: str = ""


def ppo_state(model: Any) -> dict[str, Any]:
    """What continues a PPO run (tensors and plain values only, loadable with
    ``weights_only=True``): parameters, Adam's state, the step and update counters, and the
    recent episodes behind SB3's ``rollout/ep_rew_mean``, and the running statistics of the
    observations and returns when the config normalizes them (else ``None``)."""
    episodes = [[float(e["r"]), float(e["l"]), float(e["t"])] for e in model.ep_info_buffer or []]
    return {
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(model._n_updates),
        "episode_num": int(model._episode_num),
        "policy": {k: v.detach().clone() for k, v in model.policy.state_dict().items()},
        "optimizer": model.policy.optimizer.state_dict(),
        "episodes": torch.tensor(episodes, dtype=torch.float64).reshape(-1, 3),
        "normalization": normalization_state(model),
    }


def _restore_ppo_state(model: Any, state: dict[str, Any]) -> None:
    _restore_normalization(model, state.get("normalization"))
    model.policy.load_state_dict(state["policy"])
    model.policy.optimizer.load_state_dict(state["optimizer"])
    model.num_timesteps = int(state["num_timesteps"])
    model._n_updates = int(state["n_updates"])
    model._episode_num = int(state["episode_num"])
    rows = state["episodes"].tolist()
    model.ep_info_buffer = deque(
        ({"r": ret, "l": int(length), "t": t} for ret, length, t in rows), maxlen=model._stats_window_size
    )
    model.ep_success_buffer = deque(maxlen=model._stats_window_size)


def _ppo_logger(log_dir: Path, resumed_at: int | None) -> Any:
    """SB3's CSV and TensorBoard outputs in ``log_dir``. A resumed run keeps what the earlier part
    logged up to ``resumed_at`` env steps and drops the rest (logged after the saved state, so
    about updates that the resumed run does again), in ``progress.csv`` and in TensorBoard."""
    from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat

    from metarl.runs import event_writer

    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "progress.csv"
    csv_out = CSVOutputFormat(str(path)) if resumed_at is None or not path.is_file() else None
    if csv_out is None:
        lines = path.read_text().splitlines(keepends=True)
        header = next(csv.reader(lines[:1]), [])
        kept = lines[:1]
        if "time/total_timesteps" in header:
            column = header.index("time/total_timesteps")
            for line in lines[1:]:
                row = next(csv.reader([line]), [])
                if column < len(row) and row[column] and float(row[column]) <= resumed_at:
                    kept.append(line)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
        csv_out = CSVOutputFormat.__new__(CSVOutputFormat)
        csv_out.file = open(path, "r+")  # noqa: SIM115  (SB3 closes it with the logger)
        csv_out.file.seek(0, os.SEEK_END)
        csv_out.keys, csv_out.separator, csv_out.quotechar = header, ",", '"'
    tensorboard = TensorBoardOutputFormat.__new__(TensorBoardOutputFormat)
    # purge_step hides the dropped updates' events in TensorBoard, as metarl train does.
    purge = None if resumed_at is None else resumed_at + 1
    tensorboard.writer = event_writer(log_dir, purge_step=purge)
    tensorboard._is_closed = False
    return Logger(str(log_dir), [csv_out, tensorboard])


def _ppo_vec_env(config: Config, oracle: bool, seed: int, num_envs: int) -> Any:
    """The PPO baselines' vector env: ``num_envs`` monitored envs, each with a task stream of its
    own, stepped in turn (``ppo.vec_env: dummy``), one process each (``subprocess``) or as the
    sub-envs of one batched engine (``batched``, :mod:`metarl.baseline_vec_env`); wrapped in
    SB3's ``VecNormalize`` when the config normalizes observations or rewards (no clipping, so
    that the statistics fold exactly into the pretrained policy's first layer)."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    task_seeds = np.random.SeedSequence([seed, TASK_STREAM]).generate_state(num_envs)

    def thunk(rank: int) -> Callable[[], gym.Env]:
        def make() -> gym.Env:
            env = Monitor(_ppo_env(config, int(task_seeds[rank]), oracle))
            env.action_space.seed(seed + rank)
            return env

        return make

    if config.ppo.vec_env == "batched":
        vec = _batched_ppo_env(config, oracle, [int(s) for s in task_seeds])
    else:
        factory = SubprocVecEnv if config.ppo.vec_env == "subprocess" else DummyVecEnv
        vec = factory([thunk(rank) for rank in range(num_envs)])
    vec.seed(seed)
    ppo = config.ppo
    if ppo.normalize_observations or ppo.normalize_rewards:
        vec = VecNormalize(
            vec,
            norm_obs=ppo.normalize_observations,
            norm_reward=ppo.normalize_rewards,
            clip_obs=np.inf,
            gamma=ppo.gamma,
            epsilon=NORMALIZATION_EPSILON,
        )
    return vec


def _batched_ppo_env(config: Config, oracle: bool, task_seeds: list[int]) -> Any:
    """``len(task_seeds)`` PPO envs as the sub-envs of the family's vector env (its batched
    engine on ``sampler.num_threads`` threads; ``SyncVectorEnv`` for a family without one, or with
    ``sampler.backend: sync``), with SB3's episode statistics (``VecMonitor``)."""
    from stable_baselines3.common.vec_env import VecMonitor

    from metarl.baseline_vec_env import TaskBatchVecEnv
    from metarl.sampling.local import make_vector_env

    env_id = resolve_env_id(config.env).id
    reference = _unit_actions(make_env(env_id, max_episode_steps=config.horizon, **config.env_kwargs), config)
    if oracle:
        reference = TaskInObservation(reference)
    backend = "sync" if config.sampler.backend == "sync" else "auto"
    vector = make_vector_env(
        env_id, len(task_seeds), config.horizon, backend, config.sampler.num_threads, **config.env_kwargs
    )

    def observe(observations: np.ndarray, tasks: list[Any]) -> np.ndarray:
        if oracle:
            return with_task(observations, np.stack([task_vector(t) for t in tasks]))
        return np.reshape(observations, (len(tasks), -1))

    return VecMonitor(TaskBatchVecEnv(vector, reference, task_seeds, observe, _batch_actions(reference)))


def normalization_state(model: Any) -> dict[str, torch.Tensor] | None:
    """The running statistics of a PPO model's ``VecNormalize`` (observations and discounted
    returns), as float64 tensors; ``None`` when it normalizes nothing."""
    vec = model.get_vec_normalize_env()
    if vec is None:
        return None
    return {
        "obs_mean": torch.as_tensor(np.asarray(vec.obs_rms.mean, dtype=np.float64)),
        "obs_var": torch.as_tensor(np.asarray(vec.obs_rms.var, dtype=np.float64)),
        "obs_count": torch.tensor(float(vec.obs_rms.count), dtype=torch.float64),
        "ret_mean": torch.as_tensor(np.asarray(vec.ret_rms.mean, dtype=np.float64)),
        "ret_var": torch.as_tensor(np.asarray(vec.ret_rms.var, dtype=np.float64)),
        "ret_count": torch.tensor(float(vec.ret_rms.count), dtype=torch.float64),
        "normalize_observations": torch.tensor(bool(vec.norm_obs)),
        "epsilon": torch.tensor(float(vec.epsilon), dtype=torch.float64),
    }


def _restore_normalization(model: Any, state: dict[str, torch.Tensor] | None) -> None:
    vec = model.get_vec_normalize_env()
    if vec is None or state is None:
        return
    vec.obs_rms.mean = state["obs_mean"].numpy().copy()
    vec.obs_rms.var = state["obs_var"].numpy().copy()
    vec.obs_rms.count = float(state["obs_count"])
    vec.ret_rms.mean = state["ret_mean"].numpy().copy()
    vec.ret_rms.var = state["ret_var"].numpy().copy()
    vec.ret_rms.count = float(state["ret_count"])


def normalize_observations(observations: np.ndarray, state: dict[str, torch.Tensor] | None) -> np.ndarray:
    """``observations`` [n, d] as a PPO baseline that normalizes them saw them (unchanged when
    ``state`` is ``None`` or normalizes rewards only)."""
    if state is None or not bool(state["normalize_observations"]):
        return observations
    std = np.sqrt(state["obs_var"].numpy() + float(state["epsilon"]))
    return ((observations - state["obs_mean"].numpy()) / std).astype(np.float32)


def train_ppo(
    config: Config,
    oracle: bool,
    timesteps: int,
    num_envs: int | None = None,
    seed: int = 0,
    log_dir: str | Path | None = None,
    resume: dict[str, Any] | None = None,
    on_update: Callable[[Any], None] | None = None,
    timings: list[tuple[str, float]] | None = None,
    on_log_files: Callable[[], None] | None = None,
) -> Any:
    """SB3 PPO on the family (a new task per episode), with the meta-policy's network size and
    the config's ``ppo`` settings, for ``timesteps`` env steps in all, on ``num_envs`` envs
    (default ``ppo.num_envs``). With ``log_dir``, PPO's own metrics (episode return, losses) go
    there as TensorBoard events and ``progress.csv``; without, nothing is written.
    ``on_update(model)`` is called after every PPO update but the last (to save
    :func:`ppo_state`); ``resume``, such a state, continues that run up to ``timesteps``.
    ``on_log_files()`` is called once the log files exist, before the first env step (a run
    directory claims them then, so that a kill mid-training leaves it resumable).
    ``timings``, if given, receives ``("rollout", t)`` and ``("update", t)`` as each rollout and
    each update starts, and ``("end", t)`` (``time.perf_counter``) for ``metarl bench ppo``."""
    sb3 = _sb3()
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger

    if config.num_threads:  # as a learner does: PPO's updates run on torch's threads
        torch.set_num_threads(config.num_threads)

    done = 0 if resume is None else int(resume["num_timesteps"])
    # A continuation draws new tasks and episodes: its streams are seeded from the step count.
    run_seed = seed if resume is None else int(np.random.SeedSequence([seed, done]).generate_state(1)[0])
    vec = _ppo_vec_env(config, oracle, run_seed, num_envs or config.ppo.num_envs)
    activation = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[config.policy.activation]
    hidden = list(config.policy.hidden_sizes)
    policy_kwargs: dict[str, Any] = {"net_arch": {"pi": hidden, "vf": hidden}, "activation_fn": activation}
    if isinstance(vec.action_space, gym.spaces.Box):
        policy_kwargs["log_std_init"] = config.policy.init_log_std
    ppo = config.ppo
    model = sb3.PPO(
        "MlpPolicy",
        vec,
        n_steps=ppo.n_steps,
        batch_size=ppo.batch_size,
        n_epochs=ppo.n_epochs,
        learning_rate=ppo.learning_rate,
        gamma=ppo.gamma,
        gae_lambda=ppo.gae_lambda,
        clip_range=ppo.clip_range,
        ent_coef=ppo.ent_coef,
        policy_kwargs=policy_kwargs,
        seed=run_seed,
        verbose=0,
        device="cpu",
    )
    if resume is not None:
        _restore_ppo_state(model, resume)
    # SB3's default logger makes an empty temp folder per model; log where the user looks instead.
    resumed_at = None if resume is None else done
    model.set_logger(_ppo_logger(Path(log_dir), resumed_at) if log_dir else Logger(None, []))
    if on_log_files is not None:
        on_log_files()

    class AfterEachUpdate(BaseCallback):
        def _on_rollout_start(self) -> None:  # the previous rollout's update is done
            if on_update is not None and self.model.num_timesteps > done:
                on_update(self.model)
            if timings is not None:
                timings.append(("rollout", time.perf_counter()))

        def _on_rollout_end(self) -> None:
            if timings is not None:
                timings.append(("update", time.perf_counter()))

        def _on_step(self) -> bool:
            return True

    try:
        if timesteps > done:
            callback = AfterEachUpdate()
            model.learn(total_timesteps=timesteps - done, callback=callback, reset_num_timesteps=False)
    finally:
        if timings is not None:
            timings.append(("end", time.perf_counter()))
        model.logger.close()
        vec.close()
    return model


def policy_from_ppo(
    model: Any, policy: MLPPolicy, rescale: bool, normalization: dict[str, torch.Tensor] | None = None
) -> MLPPolicy:
    """Copy an SB3 PPO actor into ``policy`` (same layer sizes). A Gaussian metarl policy acts in
    [−1, 1]ᵈ mapped onto the Box bounds when ``rescale``; SB3 acts in the units of its own action
    space (``model.action_space``: [−1, 1]ᵈ for models from :func:`train_ppo`, the env's units for
    others), so the output layer and log-std are converted: mean_ours = (mean_sb3 − offset) / scale.
    A model trained on normalized observations (``normalization``, :func:`normalization_state`)
    has them folded into the first layer: W (x − μ) / σ + b = (W / σ) x + (b − W μ / σ)."""
    action_space = model.action_space
    sb3 = model.policy.state_dict()
    ours = policy.state_dict()
    layers = sorted(
        {k.rsplit(".", 1)[0] for k in ours if k.endswith(".weight")}, key=lambda k: int(k.split(".")[1])
    )
    sources = [f"mlp_extractor.policy_net.{2 * i}" for i in range(len(layers) - 1)] + ["action_net"]
    new = {}
    for dst, src in zip(layers, sources, strict=True):
        if ours[f"{dst}.weight"].shape != sb3[f"{src}.weight"].shape:
            raise MetarlError(
                f"PPO layer {src} is {tuple(sb3[f'{src}.weight'].shape)}, the policy's {dst} is not"
            )
        new[f"{dst}.weight"], new[f"{dst}.bias"] = sb3[f"{src}.weight"].clone(), sb3[f"{src}.bias"].clone()
    if normalization is not None and bool(normalization["normalize_observations"]):
        first = layers[0]
        weight = new[f"{first}.weight"].double()
        std = torch.sqrt(normalization["obs_var"] + normalization["epsilon"]).reshape(-1)
        scaled = weight / std
        bias = new[f"{first}.bias"].double() - scaled @ normalization["obs_mean"].reshape(-1)
        new[f"{first}.weight"], new[f"{first}.bias"] = scaled.float(), bias.float()
    if "log_std" in ours:
        scale = np.ones(ours["log_std"].shape)
        offset = np.zeros(ours["log_std"].shape)
        if rescale and isinstance(action_space, gym.spaces.Box) and action_space.is_bounded():
            scale = (action_space.high - action_space.low) / 2.0
            offset = (action_space.high + action_space.low) / 2.0
        scale_t = torch.as_tensor(scale, dtype=torch.float32)
        offset_t = torch.as_tensor(offset, dtype=torch.float32)
        last = layers[-1]
        new[f"{last}.weight"] = new[f"{last}.weight"] / scale_t[:, None]
        new[f"{last}.bias"] = (new[f"{last}.bias"] - offset_t) / scale_t
        new["log_std"] = sb3["log_std"].clone() - torch.log(scale_t)
    policy.load_state_dict(new)
    return policy


def make_baseline(
    kind: str,
    config: Config,
    out_dir: str | Path,
    timesteps: int = 1_000_000,
    num_envs: int | None = None,
    force: bool = False,
    progress: PPOProgress | None = None,
) -> Path:
    """Build the baseline ``kind`` for ``config`` into the run directory ``out_dir`` (locked
    while it is written; with ``force`` an earlier run there is replaced, and only its files).
    PPO baselines train on ``num_envs`` envs (default: the config's ``ppo.num_envs``) and save
    their progress after every update; ``progress`` follows it."""
    from metarl.runs import CONFIG_FILE, RunDirectory

    if kind not in BASELINES:
        raise MetarlError(f"unknown baseline {kind!r}; expected one of {', '.join(BASELINES)}")
    if timesteps < 1:
        raise MetarlError(f"--timesteps: got {timesteps}, expected a positive integer")
    out = Path(out_dir)
    run = RunDirectory(out)
    check_no_unfinished_ppo(out, force)
    run.check_new(force, resume_hint=False)
    with run:
        try:
            run.start_over()
            run.write_text(CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
            _build(run, kind, config, timesteps, num_envs or config.ppo.num_envs, None, progress)
        except OSError as exc:
            raise MetarlError(run.write_error(exc)) from None
    return out


def unfinished_ppo(run_dir: str | Path) -> dict[str, Any] | None:
    """The saved state of an interrupted PPO baseline in ``run_dir`` (``ppo-resume.pt``, written
    by metarl, loaded with ``weights_only=True``), or ``None`` if there is none."""
    from metarl.checkpoint import load_checkpoint
    from metarl.runs import RunDirectory

    run = RunDirectory(run_dir)
    if PPO_RESUME not in run.owned() or not (run.path / PPO_RESUME).is_file():
        return None
    state = load_checkpoint(run.path / PPO_RESUME)
    if state.get("method") not in ("pretrained", "oracle") or not isinstance(state.get("ppo"), dict):
        raise MetarlError(f"{str(run.path / PPO_RESUME)!r} is not the saved state of a PPO baseline")
    return state


def check_no_unfinished_ppo(run_dir: str | Path, force: bool) -> None:
    """Refuse (one line) to start a new run over an interrupted PPO baseline unless ``force``."""
    state = None if force else unfinished_ppo(run_dir)
    if state is not None:
        done, target = state["ppo"]["num_timesteps"], state["timesteps"]
        raise MetarlError(
            f"{str(run_dir)!r} holds an unfinished {state['method']} baseline ({done:,} of {target:,} "
            f"PPO env steps); continue it with: metarl baseline --resume {run_dir}, or use --force "
            "to start over"
        )


def resume_baseline(
    run_dir: str | Path,
    timesteps: int | None = None,
    progress: PPOProgress | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Continue the PPO baseline in ``run_dir`` with the config and number of envs it started
    with: an interrupted one from its last saved update, to ``timesteps`` (default: the target it
    started with); a finished one from its ``ppo.zip`` (parameters and Adam's state, read without
    unpickling) to ``timesteps``, which must then exceed the steps it has run. An extension that
    is interrupted leaves the finished baseline as it was, beside the extension's saved state.
    ``overrides`` (``--set``) may change only the threads and how the envs are stepped
    (:data:`BASELINE_RESUME_KEYS`), which trains the same policy."""
    from metarl.config import merge, parse_overrides

    changes = parse_overrides(list(overrides or []))
    for key in given_keys(changes):
        if key not in BASELINE_RESUME_KEYS:
            raise MetarlError(
                f"--set {key}: a continued baseline can change only {', '.join(BASELINE_RESUME_KEYS)} "
                "(the threads it runs on and how its envs are stepped); start a new baseline for it"
            )
    from metarl.checkpoint import load_checkpoint, load_sb3_training_state
    from metarl.config import config_from_dict
    from metarl.runs import CHECKPOINT, RunDirectory

    run = RunDirectory(run_dir)
    if not run.path.is_dir():
        raise MetarlError(f"--resume {str(run.path)!r}: no such run directory")
    run.check_foreign()
    if timesteps is not None and timesteps < 1:
        raise MetarlError(f"--timesteps: got {timesteps}, expected a positive integer")
    state = unfinished_ppo(run.path)
    if state is None:
        if not run.holds_run():
            raise MetarlError(
                f"--resume {str(run.path)!r} holds no PPO baseline to continue (neither {PPO_RESUME} "
                f"nor a finished baseline's {CHECKPOINT})"
            )
        finished = load_checkpoint(run.path / CHECKPOINT)
        kind, done = finished.get("method"), int(finished.get("timesteps") or 0)
        if kind not in ("pretrained", "oracle"):
            raise MetarlError(f"--resume {str(run.path)!r} holds no PPO baseline (method {kind!r})")
        if timesteps is None or timesteps <= done:
            got = "" if timesteps is None else f" (got {timesteps:,})"
            raise MetarlError(
                f"--resume {str(run.path)!r} holds a finished {kind} baseline of {done:,} PPO env steps; "
                f"extend it with --timesteps N, more than {done:,}{got}"
            )
        saved = load_sb3_training_state(run.path / PPO_FILE)
        ppo = {
            "num_timesteps": saved["num_timesteps"],
            "n_updates": saved["_n_updates"],
            "episode_num": saved["_episode_num"],
            "policy": saved["policy"],
            "optimizer": saved["optimizer"],
            "episodes": torch.zeros(0, 3, dtype=torch.float64),
            "normalization": finished.get("normalization"),
        }
        state = {"method": kind, "config": finished["config"], "num_envs": saved["n_envs"], "ppo": ppo}
    done = int(state["ppo"]["num_timesteps"])
    target = int(state.get("timesteps") or 0) if timesteps is None else timesteps
    if target <= done:
        raise MetarlError(
            f"--timesteps: got {target:,}, expected more than the {done:,} PPO env steps run so far"
        )
    # a full to_dict(), as checkpoints hold
    config = config_from_dict(merge(state["config"], changes), strict=False)
    if progress is not None:
        progress.kind, progress.timesteps = state["method"], target
        if (run.path / PPO_RESUME).is_file():  # not when a finished run is extended from ppo.zip
            progress.saved_timesteps = done
    with run:
        try:
            _build(run, state["method"], config, target, int(state["num_envs"]), state, progress)
        except OSError as exc:
            raise MetarlError(run.write_error(exc)) from None
    return run.path


def _build(
    run: Any,
    kind: str,
    config: Config,
    timesteps: int,
    num_envs: int,
    resume: dict[str, Any] | None,
    progress: PPOProgress | None,
) -> None:
    """Train (or continue) the baseline into the locked run directory ``run`` and write its
    checkpoint; an interrupted PPO run leaves ``ppo-resume.pt`` of its last update."""
    from metarl.policies import make_policy
    from metarl.runs import CHECKPOINT
    from metarl.sampling.local import Sampler

    probe = Sampler(config.env, 1, 1, config.horizon, backend="sync", env_kwargs=config.env_kwargs)
    obs_dim, act_dim, discrete = probe.obs_dim, probe.act_dim, probe.discrete
    probe.close()
    p = config.policy
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        policy = make_policy(
            obs_dim, act_dim, discrete, p.hidden_sizes, p.activation, p.init_log_std, p.init_output_scale
        )
    state: dict[str, Any] = {"iteration": 0, "config": config.to_dict(), "method": kind}
    if kind in ("pretrained", "oracle"):
        header = {"method": kind, "config": config.to_dict(), "timesteps": timesteps, "num_envs": num_envs}

        def save_progress(model: Any) -> None:
            run.save(PPO_RESUME, {**header, "ppo": ppo_state(model)})
            if progress is not None:
                progress.saved_timesteps = int(model.num_timesteps)

        before = run.snapshot()
        try:  # SB3 names its log files itself: they are claimed however training ends
            model = train_ppo(
                config,
                kind == "oracle",
                timesteps,
                num_envs,
                config.seed,
                log_dir=run.path / "ppo",
                resume=None if resume is None else resume["ppo"],
                on_update=save_progress,
                on_log_files=lambda: run.claim_new_files(before),
            )
        finally:
            run.claim_new_files(before)
        run.claim([PPO_FILE])
        model.save(run.path / PPO_FILE)
        state["timesteps"] = timesteps
        state["normalization"] = normalization_state(model)
        if kind == "pretrained":
            policy_from_ppo(model, policy, config.policy.rescale_actions, state["normalization"])
    if kind != "oracle":
        state["policy"] = policy.state_dict()
    run.save(CHECKPOINT, state)
    run.remove(PPO_RESUME)


def _model_acts_in_unit_box(path: Path, config: Config) -> bool:
    """Whether an SB3 model file was trained on [−1, 1]ᵈ actions (models from :func:`train_ppo`
    that rescale) or in the env's units (older models). Read from the readable bounds SB3 writes
    beside each pickled space in its ``data`` JSON; nothing is unpickled."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            space = json.loads(archive.read("data"))["action_space"]
        low = np.array(space["low"].strip("[]").split(), dtype=float)
        high = np.array(space["high"].strip("[]").split(), dtype=float)
    except (KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile):
        return config.policy.rescale_actions
    return bool(np.all(low == -1.0) and np.all(high == 1.0))


def load_oracle(run_dir: str | Path, config: Config) -> tuple[Any, gym.Env]:
    """The oracle's SB3 PPO model and the env it acts in (the task appended to the observation),
    from ``ppo.zip`` read without unpickling: the model is rebuilt from the config (network size,
    activation) and the env's spaces, then given the saved parameters (``policy.pth``, loaded
    with ``weights_only=True``)."""
    from metarl.checkpoint import load_sb3_policy_state

    sb3 = _sb3()
    path = Path(run_dir) / PPO_FILE
    params = load_sb3_policy_state(path)
    env = make_env(resolve_env_id(config.env).id, max_episode_steps=config.horizon, **config.env_kwargs)
    if _model_acts_in_unit_box(path, config):
        env = _unit_actions(env, config)
    env = TaskInObservation(env)
    activation = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[config.policy.activation]
    hidden = list(config.policy.hidden_sizes)
    policy_kwargs = {"net_arch": {"pi": hidden, "vf": hidden}, "activation_fn": activation}
    model = sb3.PPO("MlpPolicy", env, policy_kwargs=policy_kwargs, device="cpu", n_steps=2, batch_size=2)
    try:
        model.policy.load_state_dict(params)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise MetarlError(
            f"{str(path)!r} does not fit the oracle of this config ({config.env}, hidden sizes "
            f"{hidden}): {first}"
        ) from None
    return model, env


def _batch_actions(env: gym.Env) -> Callable[[np.ndarray], np.ndarray]:
    """What the action wrappers of the oracle's single ``env`` do to an action (the rescaling
    onto the Box bounds), applied to a batch of actions [n, ...] at once, outermost first."""
    wrappers = []
    node = env
    while isinstance(node, gym.Wrapper):
        if isinstance(node, gym.ActionWrapper):
            wrappers.append(node)
        node = node.env

    def convert(actions: np.ndarray) -> np.ndarray:
        for wrapper in wrappers:
            actions = wrapper.action(actions)
        return actions

    return convert


def evaluate_oracle(
    run_dir: str | Path,
    config: Config,
    num_tasks: int,
    seed: int,
    episodes_per_task: int | None,
    deterministic: bool = False,
) -> dict[str, Any]:
    """The oracle's return on the held-out tasks that ``evaluate`` draws for this seed (its
    no adaptation), in the env of the config's ``scoring_env_kwargs``: the ceiling of the
    normalized score. Actions are sampled from the policy, as
    every other method's are, unless ``deterministic`` (PPO's mean action: a higher return).

    Every episode of every task runs at once, one sub-env each, in the family's vector env
    (its batched engine where it has one; ``sync`` with ``sampler.backend: sync``), with one
    batched ``predict`` per step. Each episode is reset with the seed the one-episode-at-a-time
    loop gave it (drawn in task-then-episode order), so with ``deterministic`` the returns are
    those of that loop; sampled actions draw PPO's noise for all sub-envs together (from torch's
    RNG seeded with ``seed``, restored afterwards)."""
    from metarl.checkpoint import load_checkpoint
    from metarl.learners.base import EVAL_STREAM
    from metarl.runs import CHECKPOINT
    from metarl.sampling.local import make_vector_env, policy_threads
    from metarl.tasks import set_tasks

    checkpoint = Path(run_dir) / CHECKPOINT
    normalization = load_checkpoint(checkpoint).get("normalization") if checkpoint.is_file() else None
    scoring = config.scoring_env_kwargs()
    with torch.random.fork_rng(devices=[]):  # loading and acting draw from torch's global RNG
        model, env = load_oracle(run_dir, config)
        rng = np.random.default_rng([seed, EVAL_STREAM])
        # The held-out tasks of the scoring env, as the other methods draw them.
        drawn = make_env(config.env, **scoring) if config.eval_env_kwargs else env
        tasks = drawn.unwrapped.sample_tasks(num_tasks, rng)
        if drawn is not env:
            drawn.close()
        episodes = episodes_per_task or config.episodes_per_task
        count = num_tasks * episodes  # sub-env i * episodes + j: episode j of task i
        # One scalar draw per episode, in the loop's order (a vectorized draw gives other seeds).
        seeds = [int(rng.integers(2**31 - 1)) for _ in range(count)]
        to_env = _batch_actions(env)
        task_rows = np.repeat(np.stack([task_vector(t) for t in tasks]), episodes, axis=0)
        backend = "sync" if config.sampler.backend == "sync" else "auto"
        try:
            vec = make_vector_env(
                config.env, count, config.horizon, backend, config.sampler.num_threads, **scoring
            )
        finally:
            env.close()
        totals = np.zeros(count)
        alive = np.ones(count, dtype=bool)
        try:
            set_tasks(vec, [t for t in tasks for _ in range(episodes)])
            obs, _ = vec.reset(seed=seeds)
            torch.manual_seed(seed)  # PPO's action noise
            with policy_threads():  # one torch thread, as the sampler acts (less contention)
                for _ in tqdm(range(config.horizon), desc="oracle, steps", disable=None, leave=False):
                    seen = normalize_observations(with_task(obs, task_rows), normalization)
                    actions, _ = model.predict(seen, deterministic=deterministic)
                    obs, reward, terminated, truncated, _ = vec.step(to_env(actions))
                    totals += np.where(alive, np.asarray(reward, dtype=np.float64), 0.0)
                    alive &= ~(np.asarray(terminated) | np.asarray(truncated))
                    if not alive.any():
                        break
        finally:
            vec.close()
    r = totals.reshape(num_tasks, episodes).sum(axis=1) / episodes
    return {
        "env_id": config.env,
        "method": "oracle",
        "env_kwargs": scoring,
        "num_tasks": num_tasks,
        "steps": [0],
        "mean_return": [float(r.mean())],
        "stderr": [float(r.std(ddof=1) / math.sqrt(num_tasks)) if num_tasks > 1 else 0.0],
        "per_task_returns": [[float(x)] for x in r],
        "tasks": [repr(t) for t in tasks],
        "seed": seed,
        "episodes_per_task": episodes,
        "deterministic": deterministic,
    }
