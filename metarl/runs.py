"""Run directories: one writer at a time, and only metarl's own files are ever replaced or removed.

A run directory holds what one training (or one baseline) wrote: ``config.yaml``,
``checkpoint.pt``, ``best.pt``, ``checkpoint-<iteration>.pt``, TensorBoard event files and, for
PPO baselines, ``ppo.zip``, ``ppo/`` and, until they finish, ``ppo-resume.pt``. Two hidden files
make it safe to share a folder with a user's own files:

* ``.metarl-run.json`` lists every file metarl wrote there. Pruning old checkpoints and
  ``--force`` remove only listed files; a file with one of metarl's names that is not listed
  (a user's ``best.pt``, say) makes metarl refuse the directory instead of overwriting it.
* ``.metarl.lock`` is held (``flock``) by the process that writes the run, so a second training
  into the same directory gets a one-line error instead of mixing two runs.

Run directories written before the list existed are recognised by a loadable ``checkpoint.pt``
and their files with metarl's names are adopted into the list.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from metarl.errors import MetarlError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second writer is not detected there
    fcntl = None  # type: ignore[assignment]

MANIFEST = ".metarl-run.json"
LOCK = ".metarl.lock"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
CONFIG_FILE = "config.yaml"
PPO_RESUME = "ppo-resume.pt"  # an unfinished PPO baseline's state (metarl baseline --resume)

# The names metarl writes into a run directory (relative paths; ``ppo/`` holds SB3's logs).
_OURS = re.compile(
    r"^(config\.yaml|checkpoint\.pt|best\.pt|checkpoint-\d{6}\.pt|events\.out\.tfevents\..+"
    r"|ppo\.zip|ppo-resume\.pt|ppo/.+)$"
)


_EVENT_STAMP = re.compile(r"events\.out\.tfevents\.(\d+)\.")


def _is_ours(name: str) -> bool:
    return bool(_OURS.match(name))


def check_not_unfinished_baseline(path: str | Path) -> None:
    """Refuse (one line) to read a checkpoint from a PPO baseline that was interrupted before its
    checkpoint was written, naming the command that finishes it."""
    path = Path(path)
    if path.is_dir() and not (path / CHECKPOINT).exists() and (path / PPO_RESUME).is_file():
        raise MetarlError(
            f"{str(path)!r} holds an unfinished PPO baseline (no {CHECKPOINT} yet); finish it with: "
            f"metarl baseline --resume {path}"
        )


def event_writer(log_dir: str | Path, purge_step: int | None = None) -> Any:
    """A TensorBoard ``SummaryWriter`` in ``log_dir`` whose event file sorts after every event
    file already there. Readers (TensorBoard, ``metarl summary``) take a directory's event files
    in name order, and the names hold the second they were made in, then a per-process counter
    that sorts as text (``...9`` after ``...10``): a run resumed in the same process and the same
    second as its earlier part could be read before it, and its ``purge_step`` would then drop
    the wrong events. So this waits, at most a second and only then, for a later second."""
    import time

    from torch.utils.tensorboard import SummaryWriter

    stamps = [
        int(m.group(1))
        for m in map(_EVENT_STAMP.match, os.listdir(log_dir) if Path(log_dir).is_dir() else [])
        if m
    ]
    while stamps and int(time.time()) <= max(stamps):
        time.sleep(0.05)
    return SummaryWriter(str(log_dir), purge_step=purge_step)


class RunDirectory:
    """A run directory on disk; see the module docstring for what it guarantees."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: IO[Any] | None = None
        self._owned: set[str] | None = None

    # --- what is there -----------------------------------------------------------------------
    def _candidates(self) -> list[str]:
        """Files in the directory (and ``ppo/``) that carry one of metarl's names."""
        if not self.path.is_dir():
            return []
        names = [p.name for p in self.path.iterdir() if p.is_file()]
        ppo = self.path / "ppo"
        if ppo.is_dir():
            names += [p.relative_to(self.path).as_posix() for p in ppo.rglob("*") if p.is_file()]
        return sorted(n for n in names if _is_ours(n))

    def _is_legacy_run(self) -> bool:
        """A run written before the manifest existed: its ``checkpoint.pt`` is a metarl checkpoint."""
        from metarl.checkpoint import load_checkpoint

        if not (self.path / CHECKPOINT).is_file():
            return False
        try:
            load_checkpoint(self.path / CHECKPOINT)
        except MetarlError:
            return False
        return True

    def owned(self) -> set[str]:
        """The files metarl wrote here (from the manifest, or adopted from a legacy run)."""
        if self._owned is None:
            manifest = self.path / MANIFEST
            if manifest.is_file():
                try:
                    data = json.loads(manifest.read_text())
                    self._owned = {str(n) for n in data["files"]}
                except (ValueError, KeyError, TypeError, OSError):
                    raise MetarlError(
                        f"{str(manifest)!r} is damaged; metarl cannot tell its files from others "
                        "there: move the files you want to keep and delete the directory"
                    ) from None
            elif self._is_legacy_run():
                self._owned = set(self._candidates())
            else:
                self._owned = set()
        return set(self._owned)

    def holds_run(self) -> bool:
        """True when a training or a baseline has saved a checkpoint here."""
        return CHECKPOINT in self.owned() and (self.path / CHECKPOINT).is_file()

    def earlier_files(self) -> list[str]:
        """Files an earlier run wrote here that still exist (a run, or what is left of one)."""
        return sorted(n for n in self.owned() if (self.path / n).is_file())

    def foreign(self) -> list[str]:
        """Files with metarl's names that metarl did not write."""
        owned = self.owned()
        return [n for n in self._candidates() if n not in owned]

    def check_new(self, force: bool, resume_hint: bool = True, check_lock: bool = True) -> None:
        """Refuse (one line) to start a new run here unless it is safe: the path is a directory or
        absent, nothing of an earlier run is here (or ``force``), and no file of the user's has
        one of our names. ``check_lock=False`` once this process holds the lock itself."""
        if self.path.exists() and not self.path.is_dir():
            raise MetarlError(f"--out {str(self.path)!r} is a file; name a directory for the run")
        existing = next(p for p in [self.path, *self.path.absolute().parents] if p.exists())
        if not existing.is_dir():
            raise MetarlError(f"--out {str(self.path)!r}: {str(existing)!r} is a file, not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise MetarlError(f"--out {str(self.path)!r}: {str(existing)!r} is not writable")
        self.check_foreign()
        if check_lock:
            self.check_unlocked()
        if self.holds_run() and not force:
            hint = f"use --resume {self.path} to continue it or " if resume_hint else "use "
            raise MetarlError(f"{str(self.path)!r} already holds a run; {hint}--force to start over")
        earlier = self.earlier_files()
        if earlier and not force:
            shown = ", ".join(earlier[:4]) + (", ..." if len(earlier) > 4 else "")
            raise MetarlError(
                f"{str(self.path)!r} holds files of an earlier run ({shown}) but no checkpoint.pt to "
                "resume from; use --force to remove them and start over, or choose another --out"
            )

    def check_foreign(self) -> None:
        """Refuse (one line) a directory where a file of the user's has one of metarl's names."""
        foreign = self.foreign()
        if foreign:
            shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
            raise MetarlError(
                f"{str(self.path)!r} holds files metarl did not write ({shown}); metarl never "
                "overwrites them: move them or choose another --out"
            )

    def check_unlocked(self) -> None:
        """A one-line error now, rather than after the sampler started, if another process holds
        the lock (it is taken for real by :meth:`acquire`)."""
        if fcntl is None or not (self.path / LOCK).is_file():
            return
        with open(self.path / LOCK) as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                raise MetarlError(self._in_use(handle.read().strip() or "?")) from None
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _in_use(self, pid: str) -> str:
        return (
            f"run directory {str(self.path)!r} is in use by another metarl process (pid {pid}); "
            "wait for it to finish, or choose another --out"
        )

    # --- writing -----------------------------------------------------------------------------
    def acquire(self) -> None:
        """Create the directory and take its lock, or a one-line error if another process has it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.path / LOCK, "a+")  # noqa: SIM115  (held until release)
        except OSError as exc:
            raise MetarlError(self.write_error(exc)) from None
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                pid = handle.read().strip() or "?"
                handle.close()
                raise MetarlError(self._in_use(pid)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle
        # Temporary files of an earlier process that was killed mid-write.
        for tmp in self.path.glob(".*.pt.tmp"):
            if _is_ours(tmp.name[1:-4]):
                tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                if fcntl is not None:
                    fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> RunDirectory:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def claim(self, names: Iterable[str]) -> None:
        """Record ``names`` as metarl's (atomically rewrites the manifest). A name is claimed
        before its file is created, so a kill in between never leaves a file of metarl's that
        the manifest does not list (which would make the directory look foreign)."""
        owned = self.owned() | {str(n) for n in names}
        if owned == self._owned and (self.path / MANIFEST).is_file():
            return
        self._write_manifest(owned)

    def _write_manifest(self, owned: set[str]) -> None:
        tmp = self.path / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps({"files": sorted(owned)}, indent=1))
        os.replace(tmp, self.path / MANIFEST)
        self._owned = set(owned)

    def remove(self, name: str) -> None:
        """Delete ``name`` if metarl wrote it; anything else is left alone. The manifest forgets
        it after the file is gone (a later file of the user's with that name is the user's)."""
        if name not in self.owned():
            return
        (self.path / name).unlink(missing_ok=True)
        self._write_manifest(self.owned() - {name})

    def start_over(self) -> None:
        """``--force``: remove every file of the earlier run (only files metarl wrote)."""
        for name in sorted(self.owned()):
            (self.path / name).unlink(missing_ok=True)
        ppo = self.path / "ppo"
        if ppo.is_dir():  # now-empty folders of SB3's logs
            for d in sorted((p for p in ppo.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                ppo.rmdir()
        self._write_manifest(set())

    def write_text(self, name: str, text: str) -> None:
        """Write a small text file of the run atomically."""
        self.claim([name])
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.path / name)

    def save(self, name: str, state: dict[str, Any]) -> None:
        """An atomic checkpoint write of ``state`` as ``name``."""
        from metarl.checkpoint import atomic_save

        self.claim([name])
        atomic_save(state, self.path / name)

    def claim_new_files(self, before: set[str]) -> None:
        """Claim the files with metarl's names that appeared since ``before`` (a
        :meth:`snapshot`), e.g. the event file a TensorBoard writer just created."""
        self.claim(set(self._candidates()) - before)

    def snapshot(self) -> set[str]:
        return set(self._candidates())

    def write_error(self, exc: OSError) -> str:
        """A one-line message for a failed write into the run directory."""
        what = exc.strerror or type(exc).__name__
        where = exc.filename or self.path
        return f"cannot write to the run directory {str(self.path)!r}: {what} ({where})"
