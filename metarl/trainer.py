"""``metarl train``'s driver: one learner, built from a config, learning into one run directory.

``Trainer(config, out_dir).train()`` is ``learner_from_config(config).learn(config.iterations,
log_dir=out_dir)``; ``Trainer.resume(out_dir)`` is ``metarl.load(out_dir)`` continued in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metarl.checkpoint import load_checkpoint
from metarl.config import Config
from metarl.errors import MetarlError
from metarl.learners.base import Learner, load
from metarl.learners.registry import learner_class
from metarl.runs import BEST, CHECKPOINT, CONFIG_FILE, RunDirectory, check_not_unfinished_baseline

__all__ = ["BEST", "CHECKPOINT", "CONFIG_FILE", "Trainer", "learner_from_config"]

BASELINE_METHODS = ("random", "pretrained", "oracle")


def learner_from_config(config: Config) -> Learner:
    """The registry's learner for ``config.algorithm`` on ``config.env``, built from the config."""
    return learner_class(config.algorithm, config.env).from_config(config)


class Trainer:
    """Runs a config's remaining iterations with its learner, into ``out_dir``.

    ``force`` starts over in a directory that already holds a run (removing that run's files,
    and nothing else).
    """

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        progress: bool = True,
        force: bool = False,
        learner: Learner | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress, self.force = progress, force
        self.learner = learner if learner is not None else learner_from_config(config)

    # The learner's state, as the CLI and tests read it.
    @property
    def algorithm(self) -> Learner:
        return self.learner

    @property
    def policy(self) -> Any:
        return self.learner.policy

    @property
    def sampler(self) -> Any:
        return getattr(self.learner, "_sampler", None)

    @property
    def device(self) -> Any:
        return self.learner.device

    @property
    def rng(self) -> Any:
        return self.learner.rng

    @property
    def generator(self) -> Any:
        return self.learner.generator

    @property
    def iteration(self) -> int:
        return self.learner.iteration

    @property
    def saved_iteration(self) -> int | None:
        return self.learner.saved_iteration

    def state_dict(self) -> dict[str, Any]:
        return self.learner.state_dict()

    @classmethod
    def resume(
        cls,
        out_dir: str | Path,
        progress: bool = True,
        device: str | None = None,
        overrides: list[str] | None = None,
    ) -> Trainer:
        """Rebuild a trainer from ``out_dir``'s latest checkpoint. It continues on the device of
        its config (exactly, on the same device), or on ``device`` if given. ``overrides`` extend
        the run or change its threads (:data:`metarl.config.RESUME_KEYS`), e.g.
        ``["iterations=1000", "num_threads=8"]``."""
        out_dir = Path(out_dir)
        if not out_dir.is_dir():
            raise MetarlError(f"--resume: {str(out_dir)!r} is not a run directory")
        run = RunDirectory(out_dir)
        run.check_unlocked()
        check_not_unfinished_baseline(out_dir)
        state = load_checkpoint(out_dir / CHECKPOINT)
        run.check_foreign()
        if state.get("method") in BASELINE_METHODS:
            raise MetarlError(
                f"--resume: {str(out_dir)!r} holds the {state['method']} baseline, which is built "
                "once and not trained further; rebuild it with metarl baseline ... --force"
            )
        if "rng" not in state or "iteration" not in state:
            raise MetarlError(f"--resume: {str(out_dir / CHECKPOINT)!r} is not a training checkpoint")
        learner = load(out_dir, device=device, strict_device=True, overrides=overrides)
        _ = getattr(learner, "sampler", None)  # built now, as a new run's is: errors before the loop
        return cls(learner.config, out_dir, progress, learner=learner)

    def train(self) -> dict[str, float]:
        """Run the remaining iterations; returns the last iteration's metrics."""
        learner = self.learner
        remaining = self.config.iterations - learner.iteration
        try:
            if remaining > 0:
                learner.learn(remaining, log_dir=self.out_dir, progress=self.progress, force=self.force)
            else:
                return {}
        finally:
            learner.close()
        return learner.metrics
