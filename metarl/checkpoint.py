"""Checkpoint files: atomic writes, and loads that never run code.

A checkpoint is a dict of tensors and plain values (numbers, strings, lists, dicts) written with
``torch.save``. It is always loaded with ``weights_only=True``: torch's restricted unpickler
refuses anything else, so a crafted ``.pt`` cannot run code when metarl opens it. The same holds
for the SB3 models of the pretrained and oracle baselines (see :func:`load_sb3_policy_state`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from metarl.errors import MetarlError

UNTRUSTED = (
    "metarl loads checkpoints with torch.load(weights_only=True) and does not unpickle other "
    "objects, since a file from someone else could run code that way"
)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename: a crash or a
    full disk leaves the previous file whole, and no temporary file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A metarl checkpoint as a dict, loaded without unpickling anything but tensors and plain
    values. Raises a one-line :class:`MetarlError` for a missing file, a file that is not a
    checkpoint, one that holds other objects, or one without a config."""
    path = Path(path)
    if not path.is_file():
        raise MetarlError(f"no checkpoint at {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise MetarlError(
            f"{str(path)!r} is not a metarl checkpoint (expected a .pt file written by metarl train "
            "or metarl baseline, or a run directory)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise MetarlError(
            f"{str(path)!r} holds objects other than tensors and plain values; {UNTRUSTED}"
        ) from None
    except Exception as exc:
        raise MetarlError(f"checkpoint {str(path)!r} is corrupt or truncated ({exc})") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise MetarlError(
            f"{str(path)!r} is not a metarl checkpoint: it has no config (metarl checkpoints hold "
            "the run's config beside its parameters)"
        )
    return state


def load_sb3_policy_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The policy parameters of a Stable-Baselines3 model file (``ppo.zip``), read without
    unpickling: SB3's ``data`` entry (cloudpickled objects) is never opened, and ``policy.pth``
    is loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise MetarlError(f"no SB3 model at {str(path)!r}")
    try:
        with zipfile.ZipFile(path) as archive, archive.open("policy.pth") as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
    except KeyError:
        raise MetarlError(f"{str(path)!r} is not an SB3 model: it has no policy.pth") from None
    except pickle.UnpicklingError:
        raise MetarlError(f"{str(path)!r} holds objects other than tensors; {UNTRUSTED}") from None
    except (zipfile.BadZipFile, RuntimeError, OSError) as exc:
        raise MetarlError(f"SB3 model {str(path)!r} is corrupt or truncated ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MetarlError(f"{str(path)!r}: policy.pth is not a state dict of tensors")
    return state


def load_sb3_training_state(path: str | Path) -> dict[str, Any]:
    """What continues the training of a Stable-Baselines3 PPO model file (``ppo.zip``), read
    without unpickling: the policy (``policy.pth``) and Adam's state (``policy.optimizer.pth``),
    both loaded with ``weights_only=True``, and the counters and ``n_envs``, plain numbers in the
    JSON of SB3's ``data`` entry (whose pickled objects are never decoded)."""
    import json

    policy = load_sb3_policy_state(path)
    try:
        with zipfile.ZipFile(path) as archive:
            with archive.open("policy.optimizer.pth") as f:
                optimizer = torch.load(f, map_location="cpu", weights_only=True)
            data = json.loads(archive.read("data"))
        counters = {key: int(data[key]) for key in ("num_timesteps", "_n_updates", "_episode_num", "n_envs")}
    except pickle.UnpicklingError:
        raise MetarlError(f"{str(path)!r} holds objects other than tensors; {UNTRUSTED}") from None
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile, RuntimeError, OSError) as exc:
        raise MetarlError(
            f"SB3 model {str(path)!r} cannot be continued ({type(exc).__name__}: {exc})"
        ) from None
    return {"policy": policy, "optimizer": optimizer, **counters}
