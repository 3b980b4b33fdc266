"""A learner's run directory while it learns: TensorBoard scalars and checkpoints.

A run directory holds ``config.yaml`` (the resolved config), TensorBoard event files,
``checkpoint.pt`` (the latest iteration), ``best.pt`` (the best validation score, see
:meth:`~metarl.learners.base.Learner.validate`; the best training post-adaptation return with
``validation.every: 0``) and the last ``checkpoint.keep_last`` numbered checkpoints. It is a
:class:`~metarl.runs.RunDirectory`: locked while training, and only files metarl wrote there are
ever replaced or removed.
Checkpoints are written to a temporary file and renamed, so a crash never leaves a torn one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from metarl.errors import MetarlError
from metarl.runs import BEST, CHECKPOINT, CONFIG_FILE, RunDirectory, event_writer

if TYPE_CHECKING:
    from metarl.learners.base import Learner


def learner_config_dict(learner: Learner) -> dict[str, Any]:
    """The config as ``config.yaml`` keeps it: only the keys the learner takes, so the file is a
    valid config for ``metarl train`` as it is."""
    full = learner.config.to_dict()
    out: dict[str, Any] = {}
    for key in learner.config_keys():
        node, target = full, out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
            target = target.setdefault(part, {})
        target[parts[-1]] = node[parts[-1]]
    return out


class RunLog:
    """Writes one learner's run into ``path`` (a context manager around the iterations).

    ``resumed`` continues the run already there (the learner was loaded from it); otherwise the
    directory must hold no other run unless ``force``, which removes that run's files (only).
    """

    def __init__(self, learner: Learner, path: Path, force: bool = False, resumed: bool = False) -> None:
        self.learner, self.path, self.force, self.resumed = learner, Path(path), force, resumed
        self.run = RunDirectory(self.path)
        self.writer: Any = None
        if not resumed:
            self.run.check_new(force)  # before anything runs: refuse in one line

    def __enter__(self) -> RunLog:
        run = self.run
        run.acquire()
        try:
            # Checked again under the lock: another process may have written here meanwhile.
            if self.resumed:
                run.check_foreign()
            else:
                run.check_new(self.force, check_lock=False)
            try:
                if not self.resumed:
                    run.start_over()  # after --force: the earlier run's files, and only those
                config = learner_config_dict(self.learner)
                run.write_text(CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
                before = run.snapshot()
                # purge_step drops events an interrupted run wrote after its last checkpoint.
                self.writer = event_writer(self.path, purge_step=self.learner.iteration + 1)
                run.claim_new_files(before)
            except OSError as exc:
                raise MetarlError(run.write_error(exc)) from None
        except BaseException:
            run.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            self.run.release()

    def record(self, metrics: dict[str, float], improved: bool) -> None:
        """Log one iteration's scalars and save its checkpoints (``best.pt`` if ``improved``)."""
        learner = self.learner
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, learner.iteration)
        self.writer.flush()
        state = learner.state_dict()
        try:
            # best.pt first: checkpoint.pt records the new best, so a kill between the two
            # writes must leave best.pt ahead, never behind (a resume redoes the iteration).
            if improved:
                self.run.save(BEST, state)
            self.run.save(CHECKPOINT, state)
            learner.saved_iteration = learner.iteration
            self._keep_history()
        except OSError as exc:
            raise MetarlError(
                f"{self.run.write_error(exc)}; the last good checkpoint "
                f"(iteration {learner.iteration - 1}) is kept"
            ) from None

    def _keep_history(self) -> None:
        """Keep ``checkpoint-<iteration>.pt`` for the last ``checkpoint.keep_last`` iterations
        (only files this run directory's manifest lists are ever removed)."""
        keep = self.learner.config.checkpoint.keep_last
        if keep <= 0:
            return
        run = self.run
        latest = self.path / CHECKPOINT
        name = f"checkpoint-{self.learner.iteration:06d}.pt"
        numbered = self.path / name
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
