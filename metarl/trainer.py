"""The training loop around a meta-learner: seeding, TensorBoard, progress bar, checkpoints.

A run directory holds ``config.yaml`` (the resolved config), TensorBoard event files,
``checkpoint.pt`` (the latest iteration) and ``best.pt`` (the best post-adaptation return).
Checkpoints are written to a temporary file and renamed, so a crash never leaves a torn one.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from metarl.checkpoint import atomic_save, load_checkpoint
from metarl.config import Config, config_from_dict
from metarl.device import resolve_device
from metarl.errors import ConfigError, MetarlError, TrainingStopped
from metarl.learners import ALGORITHMS
from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy, MLPPolicy
from metarl.runs import BEST, CHECKPOINT, CONFIG_FILE, RunDirectory
from metarl.sampling.local import Sampler
from metarl.supervised import SINUSOID, Regressor, SupervisedMetaLearner

log = logging.getLogger(__name__)

__all__ = ["BEST", "CHECKPOINT", "CONFIG_FILE", "Trainer", "atomic_save", "load_checkpoint", "make_policy"]

BASELINE_METHODS = ("random", "pretrained", "oracle")
TRAIN_STREAM, EVAL_STREAM = 0, 1  # independent task streams for training and held-out tasks


def make_policy(config: Config, obs_dim: int, act_dim: int, discrete: bool = False) -> MLPPolicy:
    """The config's policy: categorical over ``act_dim`` actions if ``discrete``, else Gaussian."""
    p = config.policy
    if discrete:
        return CategoricalMLPPolicy(obs_dim, act_dim, p.hidden_sizes, p.activation)
    return GaussianMLPPolicy(obs_dim, act_dim, p.hidden_sizes, p.activation, p.init_log_std)


def make_sampler(config: Config, num_tasks: int | None = None, episodes: int | None = None) -> Any:
    """The config's sampler: local (:class:`Sampler`) or on Ray (:class:`RaySampler`)."""
    args = (
        config.env,
        num_tasks or config.meta_batch_size,
        episodes or config.episodes_per_task,
        config.horizon,
    )
    kwargs = {
        "env_kwargs": config.env_kwargs,
        "num_threads": config.sampler.num_threads,
        "rescale_actions": config.policy.rescale_actions,
        "groups": config.sampler.groups,
    }
    if config.sampler.backend != "ray":
        kwargs["batches_kept"] = config.inner.steps + 1  # the inner batches and the valid one
    if config.sampler.backend == "ray":
        from metarl.sampling.ray import RaySampler

        return RaySampler(
            *args, num_workers=config.sampler.num_workers, address=config.sampler.ray_address, **kwargs
        )
    return Sampler(*args, backend=config.sampler.backend, **kwargs)


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor on the CPU: checkpoints load on machines without a GPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _score(metrics: dict[str, float]) -> float:
    """What ``best.pt`` maximises: the post-adaptation return (RL) or −loss (supervised)."""
    if "return/post_adaptation" in metrics:
        return metrics["return/post_adaptation"]
    return -metrics["loss/post_adaptation"]


def _summary(metrics: dict[str, float]) -> dict[str, str]:
    """The progress bar's figures."""
    out = {}
    for key, name, fmt in [
        ("return/pre_adaptation", "pre", ".1f"),
        ("return/post_adaptation", "post", ".1f"),
        ("loss/pre_adaptation", "pre", ".3f"),
        ("loss/post_adaptation", "post", ".3f"),
        ("trpo/kl", "kl", ".4f"),
        ("meta/kl", "kl", ".4f"),
        ("sampler/env_steps_per_s", "sps", ".0f"),
    ]:
        if key in metrics:
            out[name] = format(metrics[key], fmt)
    return out


class Trainer:
    """Runs ``config.iterations`` meta-iterations and writes everything into ``out_dir``.

    The run directory is a :class:`~metarl.runs.RunDirectory`: locked while training, and only
    files metarl wrote there are ever replaced or removed. ``force`` starts over in a directory
    that already holds a run (removing that run's files, and nothing else).
    """

    def __init__(
        self, config: Config, out_dir: str | Path, progress: bool = True, force: bool = False
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.force = force
        self._resumed = False
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng([config.seed, TRAIN_STREAM])
        self.generator = torch.Generator().manual_seed(config.seed)
        self.sampler: Any = None
        #: Where the learner's work runs (the policy lives there); sampling stays on the CPU.
        self.device = resolve_device(config.device)
        if config.env == SINUSOID:  # supervised few-shot regression: no env, no sampler
            self.policy = Regressor(1, 1, config.policy.hidden_sizes, config.policy.activation)
            self.policy.to(self.device)
            self.algorithm = SupervisedMetaLearner(self.policy, config)
        else:
            if config.algorithm not in ALGORITHMS:
                raise ConfigError(
                    f"algorithm: {config.algorithm!r} is a supervised learner (env {SINUSOID}); "
                    f"for RL use one of {', '.join(ALGORITHMS)}"
                )
            self.sampler = make_sampler(config)
            sampler = self.sampler
            self.policy = make_policy(config, sampler.obs_dim, sampler.act_dim, sampler.discrete)
            self.policy.to(self.device)  # initialised on the CPU: the same θ on every device
            self.algorithm = ALGORITHMS[config.algorithm](self.policy, sampler, config)
        self.iteration = 0  # iterations completed
        self.saved_iteration: int | None = None  # the iteration checkpoint.pt holds (None: none yet)
        self.env_steps = 0
        self.best_return = -float("inf")
        self.failed_in_a_row = 0  # iterations since the last accepted meta-step

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "best_return": self.best_return,
            "failed_in_a_row": self.failed_in_a_row,
            "config": self.config.to_dict(),
            "policy": _to_cpu(self.policy.state_dict()),
            "algorithm": _to_cpu(self.algorithm.state_dict()),
            "rng": {
                "numpy": self.rng.bit_generator.state,
                "torch_generator": self.generator.get_state(),
                "torch_global": torch.get_rng_state(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = state["iteration"]
        self.env_steps = state["env_steps"]
        self.best_return = state["best_return"]
        self.failed_in_a_row = state.get("failed_in_a_row", 0)
        self.policy.load_state_dict(state["policy"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.rng.bit_generator.state = state["rng"]["numpy"]
        self.generator.set_state(state["rng"]["torch_generator"])
        torch.set_rng_state(state["rng"]["torch_global"])

    @classmethod
    def resume(cls, out_dir: str | Path, progress: bool = True, device: str | None = None) -> Trainer:
        """Rebuild a trainer from ``out_dir``'s config and latest checkpoint. It continues on the
        device of its config (exactly, on the same device), or on ``device`` if given."""
        out_dir = Path(out_dir)
        if not out_dir.is_dir():
            raise MetarlError(f"--resume: {str(out_dir)!r} is not a run directory")
        RunDirectory(out_dir).check_unlocked()
        state = load_checkpoint(out_dir / CHECKPOINT)
        RunDirectory(out_dir).check_foreign()
        if state.get("method") in BASELINE_METHODS:
            raise MetarlError(
                f"--resume: {str(out_dir)!r} holds the {state['method']} baseline, which is built "
                "once and not trained further; rebuild it with metarl baseline ... --force"
            )
        if "rng" not in state or "iteration" not in state:
            raise MetarlError(f"--resume: {str(out_dir / CHECKPOINT)!r} is not a training checkpoint")
        config = config_from_dict(state["config"])
        if device is not None:
            resolve_device(device)  # a bad value: one line before anything is built
            config.device = device
        trainer = cls(config, out_dir, progress)
        trainer.load_state_dict(state)
        trainer.saved_iteration = trainer.iteration
        trainer._resumed = True
        return trainer

    def _guard(self, metrics: dict[str, float]) -> None:
        """Count and report rejected meta-steps, non-finite returns and non-finite values the
        learner caught. An iteration whose returns (or losses) are NaN or infinite counts as
        failed even when the learner accepted its step."""
        reason = ""
        if metrics.get("meta/accepted", 1.0) < 1.0:
            reason = f"meta-step rejected ({self.algorithm.last_failure})"
        elif not math.isfinite(_score(metrics)) or not all(
            math.isfinite(v) for k, v in metrics.items() if k.startswith(("return/", "loss/"))
        ):
            reason = "non-finite returns or losses (NaN or infinite rewards, or a diverged step)"
        if reason:
            self.failed_in_a_row += 1
            self.last_failure = reason
            log.warning(
                "iteration %d: %s; parameters kept, %d in a row", self.iteration, reason, self.failed_in_a_row
            )
        else:
            self.failed_in_a_row = 0
        metrics["guard/failed_in_a_row"] = float(self.failed_in_a_row)
        for key in ("guard/nonfinite_advantages", "baseline/fallbacks"):
            if metrics.get(key, 0.0) > 0:
                log.warning("iteration %d: %s = %d", self.iteration, key, int(metrics[key]))

    def _keep_history(self, run: RunDirectory) -> None:
        """Keep ``checkpoint-<iteration>.pt`` for the last ``checkpoint.keep_last`` iterations
        (only files this run directory's manifest lists are ever removed)."""
        keep = self.config.checkpoint.keep_last
        if keep <= 0:
            return
        latest = self.out_dir / CHECKPOINT
        name = f"checkpoint-{self.iteration:06d}.pt"
        numbered = self.out_dir / name
        if numbered.exists() and name not in run.owned():  # appeared while the run went on
            raise MetarlError(f"{str(numbered)!r} was not written by metarl; it is left as it is")
        run.claim([name])
        numbered.unlink(missing_ok=True)
        try:
            os.link(latest, numbered)  # the same bytes; the next atomic save replaces only the name
        except OSError:
            shutil.copyfile(latest, numbered)
        history = sorted(n for n in run.owned() if n.startswith("checkpoint-") and n.endswith(".pt"))
        for old in history[:-keep]:
            run.remove(old)

    def _params_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.policy.state_dict().values())

    # --- the loop ----------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Run the remaining iterations; returns the last iteration's metrics."""
        from torch.utils.tensorboard import SummaryWriter

        run = RunDirectory(self.out_dir)
        if not self._resumed:
            run.check_new(self.force)
        run.acquire()
        writer = None
        bar = None
        self.last_failure = ""
        try:
            # Checked again under the lock: another process may have written here meanwhile.
            if self._resumed:
                run.check_foreign()
            else:
                run.check_new(self.force, check_lock=False)
            try:
                if not self._resumed:
                    run.start_over()  # after --force: the earlier run's files, and only those
                run.write_text(CONFIG_FILE, yaml.safe_dump(self.config.to_dict(), sort_keys=False))
                before = run.snapshot()
                # purge_step drops events an interrupted run wrote after its last checkpoint.
                writer = SummaryWriter(str(self.out_dir), purge_step=self.iteration + 1)
                run.claim_new_files(before)
            except OSError as exc:
                raise MetarlError(run.write_error(exc)) from None
            metrics: dict[str, float] = {}
            bar = tqdm(
                range(self.iteration, self.config.iterations),
                initial=self.iteration,
                total=self.config.iterations,
                desc=Path(self.config.env).name,
                disable=not self.progress,
                dynamic_ncols=True,
            )
            for _ in bar:
                metrics = self._iteration(run, writer)
                bar.set_postfix(_summary(metrics))
                log.info("iter %d: %s, %.1fs", self.iteration, _summary(metrics), metrics["time/iteration_s"])
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
            if self.sampler is not None:
                self.sampler.close()
            run.release()
        return metrics

    def _iteration(self, run: RunDirectory, writer: Any) -> dict[str, float]:
        """One meta-iteration, its logs and its checkpoints."""
        t0 = time.perf_counter()
        metrics = self.algorithm.train_iteration(self.rng, self.generator)
        elapsed = time.perf_counter() - t0
        if not self._params_finite():
            raise TrainingStopped(
                f"iteration {self.iteration + 1} made the policy's parameters NaN or infinite; it was "
                f"not saved, and {str(self.out_dir)!r} keeps iteration {self.iteration}"
            )
        self.iteration += 1
        if "sampler/env_steps" in metrics:
            self.env_steps += int(metrics["sampler/env_steps"])
            metrics["sampler/env_steps_per_s"] = metrics["sampler/env_steps"] / max(
                metrics["time/sampling_s"], 1e-9
            )
            metrics["sampler/total_env_steps"] = float(self.env_steps)
        metrics["time/iteration_s"] = elapsed
        self._guard(metrics)
        for key, value in metrics.items():
            writer.add_scalar(key, value, self.iteration)
        writer.flush()
        score = _score(metrics)
        improved = math.isfinite(score) and score > self.best_return
        if improved:
            self.best_return = score
        state = self.state_dict()
        try:
            # best.pt first: checkpoint.pt records the new best, so a kill between the two
            # writes must leave best.pt ahead, never behind (a resume redoes the iteration).
            if improved:
                run.save(BEST, state)
            run.save(CHECKPOINT, state)
            self.saved_iteration = self.iteration
            self._keep_history(run)
        except OSError as exc:
            raise MetarlError(
                f"{run.write_error(exc)}; the last good checkpoint (iteration {self.iteration - 1}) is kept"
            ) from None
        if self.failed_in_a_row >= self.config.max_failed_iterations:
            raise TrainingStopped(
                f"stopped after {self.failed_in_a_row} iterations in a row without an accepted "
                f"meta-step (last: {self.last_failure}); the checkpoints in "
                f"{str(self.out_dir)!r} hold the last good parameters"
            )
        return metrics
