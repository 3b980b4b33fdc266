"""Figure-5 style evaluation: the return on held-out tasks after 0, 1, …, K adaptation steps."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from metarl.adaptation import compute_advantages, pg_step
from metarl.checkpoint import load_checkpoint
from metarl.config import Config, config_from_dict
from metarl.device import resolve_device
from metarl.errors import MetarlError
from metarl.learners.base import EVAL_STREAM
from metarl.policies import MLPPolicy, Params
from metarl.runs import BEST, CHECKPOINT, check_not_unfinished_baseline
from metarl.sampling import EpisodeSampler
from metarl.sampling.local import Sampler


def checkpoint_path(path: str | Path, which: str = "latest") -> Path:
    """The checkpoint file a run directory's ``latest`` or ``best`` names, or ``path`` itself."""
    path = Path(path)
    if path.is_dir():
        check_not_unfinished_baseline(path)
        if which == "best" and not (path / BEST).exists() and (path / CHECKPOINT).exists():
            raise MetarlError(
                f"{str(path)!r} has no {BEST} yet: it is written at the run's first validation "
                "(every validation.every iterations, and at the last; with validation.every 0, at "
                "the first iteration with a finite return); use the latest checkpoint"
            )
        return path / (BEST if which == "best" else CHECKPOINT)
    if not path.exists():
        raise MetarlError(f"run directory or checkpoint {str(path)!r} not found")
    return path


def load_policy(path: str | Path, which: str = "latest") -> tuple[Config, MLPPolicy]:
    """The config and trained policy (or regressor) of a run directory (``latest`` or ``best``
    checkpoint) or of a checkpoint file; ``None`` for the oracle baseline's. The policy records
    where it came from: ``method``, ``checkpoint`` (the file) and ``iteration``."""
    from metarl.learners.base import load

    file = checkpoint_path(path, which)
    state = load_checkpoint(file)
    if state.get("method") == "oracle":
        return config_from_dict(state["config"], strict=False), None  # type: ignore[return-value]
    learner = load(file)
    policy = learner.policy
    policy.method = learner.method  # type: ignore[attr-defined]
    policy.checkpoint, policy.iteration = str(file), state.get("iteration")  # type: ignore[attr-defined]
    return learner.config, policy  # type: ignore[return-value]


def _spaces(obs_dim: int, act_dim: int, discrete: bool) -> str:
    kind = f"{act_dim} discrete actions" if discrete else f"{act_dim}-dim actions"
    return f"{obs_dim}-dim observations, {kind}"


def check_adaptation(
    config: Config, steps: int, episodes: int | None, lr: float | None, later_lr: float | None
) -> tuple[float, float]:
    """Check an adaptation protocol's arguments (one-line errors); returns the step sizes with
    their defaults resolved: ``lr`` = ``inner.lr``, ``later_lr`` = ``lr / 2``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise MetarlError(f"adaptation steps must be an integer >= 0, got {steps!r}")
    if episodes is not None and episodes < 1:
        raise MetarlError(f"need --episodes >= 1, got {episodes}")
    lr = config.inner.lr if lr is None else lr
    later_lr = lr / 2 if later_lr is None else later_lr
    if lr <= 0 or later_lr <= 0:
        raise MetarlError(f"adaptation step sizes must be > 0, got {lr} and {later_lr}")
    return lr, later_lr


def adapt_to_tasks(
    policy: MLPPolicy,
    config: Config,
    sampler: EpisodeSampler,
    tasks: list[Any],
    steps: int,
    lr: float,
    later_lr: float,
    rng: np.random.Generator,
    generator: torch.Generator,
    device: torch.device,
    progress: bool = False,
    score_last: bool = True,
) -> tuple[list[list[float]], Params]:
    """Adapt θ to each of ``tasks`` (one per sampler task): ``steps`` times, sample episodes with
    the current parameters and take one PG step (``lr`` first, ``later_lr`` after). Returns each
    batch's per-task mean returns (``steps + 1`` batches with ``score_last``, else ``steps``) and
    the adapted per-task parameters (θ itself if ``steps`` is 0)."""
    sampler.set_tasks(tasks)
    params: Params = {k: v.detach() for k, v in policy.params().items()}
    per_task = False
    returns = []  # [batches][num_tasks]
    batches = steps + 1 if score_last else steps
    bar = tqdm(range(batches), desc="adaptation steps", disable=None if progress else True, leave=False)
    for k in bar:
        episodes = sampler.sample(policy, params, rng, generator, per_task).to(device)
        returns.append(episodes.returns_per_task().tolist())
        if k < steps:
            adv = compute_advantages(episodes, config.gamma, config.gae_lambda, config.normalize_advantages)
            step_lr = lr if k == 0 else later_lr
            params = pg_step(policy, params, episodes, adv.values, step_lr, True, per_task)
            params = {n: v.detach() for n, v in params.items()}
            per_task = True
    return returns, params


def adapt_and_evaluate(
    policy: MLPPolicy,
    config: Config,
    num_tasks: int = 40,
    steps: int = 3,
    seed: int = 0,
    episodes_per_task: int | None = None,
    lr: float | None = None,
    later_lr: float | None = None,
    env_id: str | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Adapt ``policy`` to ``num_tasks`` held-out tasks and record the return after each step.

    ``env_id`` (default: the config's env) evaluates on another family with the same
    observation and action spaces, e.g. a policy trained on one task distribution on another.
    The tasks run with the config's :meth:`~metarl.config.Config.scoring_env_kwargs`; ``env_kwargs``
    replace those of the same names, e.g. to score a policy meta-trained with a shaped reward on
    the paper's. The result records what the tasks ran with.

    Tasks come from a stream independent of training's for the same seed. Each step samples
    ``episodes_per_task`` fresh episodes with the current parameters, records their mean
    return, then takes one PG step: of size ``lr`` (default: the config's inner lr) first, and
    ``later_lr`` after that (default: half of ``lr``, the MAML paper's protocol).
    ``progress`` shows a progress bar on a terminal (one tick per sampled batch). The
    adaptation steps run on ``device`` (default ``auto``: the GPU when there is one, whichever
    device the policy was trained on); sampling runs on the CPU. ``policy`` itself is not moved.
    """
    if num_tasks < 1 or steps < 0:
        raise MetarlError(f"need --tasks >= 1 and --steps >= 0, got {num_tasks} and {steps}")
    lr, later_lr = check_adaptation(config, steps, episodes_per_task, lr, later_lr)
    episodes_per_task = episodes_per_task or config.episodes_per_task
    rng = np.random.default_rng([seed, EVAL_STREAM])
    generator = torch.Generator().manual_seed(seed)
    device = resolve_device("auto" if device is None else str(device))
    if next(policy.parameters()).device != device:
        policy = copy.deepcopy(policy).to(device)
    env_id = env_id or config.env
    env_kwargs = {**config.scoring_env_kwargs(), **(env_kwargs or {})}
    sampler = Sampler(
        env_id,
        num_tasks,
        episodes_per_task,
        config.horizon,
        # Held-out tasks run in this process on the C engine, the single env's exact twin.
        backend="auto" if config.sampler.backend in ("ray", "warp") else config.sampler.backend,
        env_kwargs=env_kwargs,
        num_threads=config.sampler.num_threads,
        rescale_actions=config.policy.rescale_actions,
        groups=config.sampler.groups,
    )
    try:
        shape = (sampler.obs_dim, sampler.act_dim, sampler.discrete)
        trained = (policy.obs_dim, policy.act_dim, policy.action_dtype == torch.int64)
        if shape != trained:
            raise MetarlError(
                f"the policy was trained on {config.env} ({_spaces(*trained)}) and cannot run on "
                f"{env_id} ({_spaces(*shape)}); evaluate it on an env with the same spaces"
            )
        tasks = sampler.sample_tasks(num_tasks, rng)
        returns, _ = adapt_to_tasks(
            policy, config, sampler, tasks, steps, lr, later_lr, rng, generator, device, progress=progress
        )
    finally:
        sampler.close()

    per_step = np.asarray(returns)
    return {
        "env_id": env_id,
        "method": getattr(policy, "method", config.algorithm),
        "trained_on": config.env,
        "env_kwargs": env_kwargs,
        "num_tasks": num_tasks,
        "steps": list(range(steps + 1)),
        "mean_return": per_step.mean(axis=1).tolist(),
        "stderr": (per_step.std(axis=1, ddof=1) / math.sqrt(num_tasks)).tolist()
        if num_tasks > 1
        else [0.0] * (steps + 1),
        "per_task_returns": per_step.T.tolist(),
        "tasks": [repr(t) for t in tasks],
        "seed": seed,
        "train_seed": config.seed,  # the training run's seed (compare --seeds pools these)
        "episodes_per_task": episodes_per_task,
        "lr": lr,
        "later_lr": later_lr,
    }
