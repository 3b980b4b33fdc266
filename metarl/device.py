"""Where the learner's tensors live: ``device: auto | cpu | cuda | cuda:N``.

Everything after the episodes (advantages and the baseline fit, inner steps, the meta-objective,
Hessian-vector products, CG and the line search) runs on the learner's device. The CPU samplers
act with a CPU copy of the current parameters, made once per sampling call, and return the
episodes, which are then moved to the device in one copy; the MuJoCo Warp sampler
(``sampler.backend: warp``) samples on the learner's device itself.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any

import torch

from metarl.errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
DEVICE_ALLOWED = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str) -> torch.device:
    """The torch device for a ``device`` setting; ``auto`` takes the GPU when there is one.

    Raises a one-line :class:`ConfigError` for a malformed value or a GPU that is not there."""
    if not isinstance(spec, str) or not DEVICE_PATTERN.match(spec):
        raise ConfigError(f"device must be one of {DEVICE_ALLOWED}, got {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {spec!r}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu "
                "(or device: cpu or auto in the config), or install a CUDA build of torch"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {spec!r}: there are {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    return device


def describe(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (16 torch threads)``, for logs and benchmarks."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    threads = torch.get_num_threads()
    return f"cpu ({threads} torch thread{'s' if threads != 1 else ''})"


def _cpu_model() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``; elsewhere what :mod:`platform` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict[str, Any]:
    """What a run's iterations ran on, as plain values for its checkpoint (``metarl summary``
    prints them): OS and architecture, CPU model, the cores this process may use, torch's
    version and intra-op threads, and the learner's device (:func:`describe`)."""
    from metarl_envs.batched import usable_cores

    return {
        "system": f"{platform.system()} {platform.machine()}",
        "cpu": _cpu_model(),
        "cores": usable_cores(),
        "torch": str(torch.__version__),  # a str subclass that weights_only loading refuses
        "torch_threads": torch.get_num_threads(),
        "device": describe(device),
    }
