"""The MuJoCo Warp engine: every sub-env of a vector env as one world of a MuJoCo Warp model,
stepped on a GPU (or on Warp's CPU device), with observations, rewards and flags computed there
as torch tensors.

:class:`WarpVectorEnv` runs the same MJCF model as a family's single env, with
``nworld = num_envs``, and the family's twin logic (its observation, reward, termination and task
arrays, the mixins in ``half_cheetah.py``, ``ant.py`` and ``rand_params.py``) computes on torch
views of Warp's arrays: nothing goes through NumPy between steps, and a sampler's policy can act
on the observations where they are. The random-physics families get per-world masses, inertias,
damping and friction from MuJoCo Warp's batched model fields.

It keeps the single env's semantics: the same reset noise drawn from the same per-sub-env
generators, the same clipping, reward and time limit, and Gymnasium's ``NEXT_STEP`` autoreset
(kept by :class:`~metarl_envs.base.TaskVectorEnv`). MuJoCo Warp computes in float32, so its
trajectories are close to the C engine's, not bit-identical; the tests bound the difference.

Needs the ``gpu`` extra (``pip install 'metarl[gpu]'``: ``warp-lang`` and ``mujoco-warp``);
this module imports neither until an engine is made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from metarl_envs.batched import MujocoTwin

log = logging.getLogger(__name__)

#: What to install for this engine, for error messages.
INSTALL_HINT = "pip install 'metarl[gpu]' (warp-lang and mujoco-warp)"

#: MjModel fields that ``set_const`` derives from the randomized physics parameters: batched per
#: world alongside them, or every world would share world 0's.
DERIVED_FIELDS = (
    "body_subtreemass",
    "dof_invweight0",
    "body_invweight0",
    "tendon_invweight0",
    "actuator_acc0",
)


class WarpUnavailableError(ImportError):
    """MuJoCo Warp (the ``gpu`` extra) is not installed."""


def import_warp() -> tuple[Any, Any]:
    """``warp`` and ``mujoco_warp``, initialised quietly; a one-line error naming the extra when
    they are not installed."""
    try:
        import warp

        # Before anything initialises it: no banner, no line per compiled module.
        warp.config.quiet = True
        warp.config.log_level = max(warp.config.log_level, warp.LOG_WARNING)
        import mujoco_warp
    except ImportError as exc:
        raise WarpUnavailableError(
            f"the warp sampler backend needs MuJoCo Warp ({exc.name} is not installed): {INSTALL_HINT}"
        ) from None
    warp.init()
    return warp, mujoco_warp


def warp_available() -> bool:
    """Whether MuJoCo Warp can be imported (without initialising it)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("warp", "mujoco_warp"))


class WarpVectorEnv(MujocoTwin):
    """``num_envs`` copies of ``single_env_cls`` as the worlds of one MuJoCo Warp model on
    ``device`` (a torch device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``).

    ``reset`` and ``step`` return torch tensors on ``device`` (float32 observations and rewards,
    bool flags); ``step`` takes actions as a tensor or an array, ``[num_envs, act_dim]``.
    ``nconmax`` and ``njmax`` size MuJoCo Warp's contact and constraint buffers per world (the
    family's measured sizes, :attr:`contact_buffers`, by default); a step that overflows them
    raises, naming the sizes to raise.
    """

    #: The family's contact and constraint buffers per world (nconmax, njmax); None for Warp's
    #: own guess from the model.
    contact_buffers: tuple[int, int] | None = None
    #: Model fields given one value per world (the random-physics families' parameters).
    batched_fields: tuple[str, ...] = ()

    def __init__(
        self,
        num_envs: int,
        max_episode_steps: int | None = None,
        device: str = "cpu",
        nconmax: int | None = None,
        njmax: int | None = None,
        deterministic: bool = True,
        **env_kwargs: Any,
    ) -> None:
        import torch

        wp, mjw = import_warp()
        self._wp, self._mjw = wp, mjw
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.wp_device = wp.device_from_torch(self.device)
        ref = self.single_env_cls(**env_kwargs)
        self._setup(ref, num_envs, max_episode_steps)
        self._take_reference(ref)
        default_con, default_j = self.contact_buffers or (None, None)
        self.nconmax = nconmax if nconmax is not None else default_con
        self.njmax = njmax if njmax is not None else default_j
        batched = {f: num_envs for f in self._batched_model_fields()}
        with wp.ScopedDevice(self.wp_device):
            self.model = mjw.put_model(ref.model, batch_sizes=batched)
            # Reproducible runs on a GPU (contact order, constraint rows, atomic sums) unless
            # the caller trades them for speed, and no per-world prints from the kernels:
            # overflows are reported by check_buffers.
            self.deterministic = deterministic
            self.model.opt.deterministic = (
                mjw.DeterminismType.ALL if deterministic else mjw.DeterminismType(0)
            )
            self.model.opt.warn_overflow = 0
            self.data = mjw.make_data(ref.model, nworld=num_envs, nconmax=self.nconmax, njmax=self.njmax)
        wp.synchronize_device(self.wp_device)  # its copies ran on Warp's stream; torch's come next
        self.qpos = wp.to_torch(self.data.qpos)
        self.qvel = wp.to_torch(self.data.qvel)
        self.ctrl = wp.to_torch(self.data.ctrl)
        self._overflow = wp.to_torch(self.data.overflow)  # per world, MuJoCo Warp's bitmask
        kinds = mjw.OverflowType
        self._buffer_bits = int(
            kinds.NEFC | kinds.NJMAX_NNZ | kinds.BROADPHASE | kinds.NARROWPHASE | kinds.CCD
        )
        self._low_t = torch.as_tensor(self._low, dtype=torch.float32, device=self.device)
        self._high_t = torch.as_tensor(self._high, dtype=torch.float32, device=self.device)
        # On a GPU, the CUDA graphs of a step and of a reset's two halves, captured on first use
        # (None where a capture failed), and the reset mask those graphs read.
        self._graphs: dict[str, Any] = {}
        self._reset_mask = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self._bind_fields()
        self.set_tasks(self._tasks)

    def _batched_model_fields(self) -> tuple[str, ...]:
        """The family's :attr:`batched_fields` and the constants ``set_const`` derives from them."""
        return self.batched_fields + (DERIVED_FIELDS if self.batched_fields else ())

    # --- the arrays of the twins: torch tensors on the engine's device, float32 ------------------
    def _torch(self, array: Any) -> Any:
        return self._wp.to_torch(array)

    def _field(self, name: str, width: int) -> Any:
        return self._torch(getattr(self.data, name)).view(self.num_envs, -1, width)

    def _snapshot(self, x: Any) -> Any:
        return x.clone()

    def _concat(self, parts: list[Any]) -> Any:
        import torch

        return torch.cat(parts, dim=1)

    def _task_array(self, values: Any) -> Any:
        import torch

        return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32, device=self.device)

    def _physics(self, field: str) -> Any:
        return self._torch(getattr(self.model, field)).view(
            self.num_envs, *getattr(self.reference.model, field).shape
        )

    def _set_const(self) -> None:
        with self._on_device():
            self._mjw.set_const(self.model, self.data)

    def _zeros(self, n: int, dtype: str) -> Any:
        import torch

        return torch.zeros(n, dtype=getattr(torch, dtype), device=self.device)

    def _where(self, condition: Any, x: Any, y: Any) -> Any:
        import torch

        return torch.where(condition, x, y)

    # --- the engine -----------------------------------------------------------------------------
    def _actions(self, actions: Any) -> Any:
        import torch

        actions = torch.as_tensor(actions, device=self.device).to(torch.float32)
        return torch.minimum(torch.maximum(actions, self._low_t), self._high_t)

    def _reset_ids(self, ids: np.ndarray) -> None:
        """Reset worlds ``ids`` as ``mj_resetData`` does, set the single env's noisy initial state
        drawn from their generators, and recompute their derived fields (the other worlds' stay
        as their last step left them)."""
        import torch

        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return
        mask = self._reset_mask
        index = torch.as_tensor(ids, device=self.device)
        mask.zero_()
        mask[index] = True
        wp, mjw = self._wp, self._mjw
        states = [self._reset_state(int(i)) for i in ids]
        derived = [self._torch(getattr(self.data, f)) for f in self.derived_observed]
        kept = [x.clone() for x in derived] if ids.size < self.num_envs else []
        self._launch("reset", lambda: mjw.reset_data(self.model, self.data, reset=wp.from_torch(mask)))
        self.qpos[index] = torch.as_tensor(
            np.stack([s[0] for s in states]), dtype=torch.float32, device=self.device
        )
        self.qvel[index] = torch.as_tensor(
            np.stack([s[1] for s in states]), dtype=torch.float32, device=self.device
        )
        self._launch("forward", lambda: mjw.forward(self.model, self.data))
        for x, old in zip(derived, kept, strict=False):
            x[~mask] = old[~mask]

    #: Derived MjData fields a family reads between steps (restored for worlds not being reset,
    #: since ``forward`` recomputes every world).
    derived_observed: tuple[str, ...] = ("xpos", "cfrc_ext")

    def _on_device(self) -> Any:
        """A context for Warp's launches: on the engine's device and, on a GPU, on torch's current
        stream, so that Warp's work and torch's are ordered."""
        import contextlib

        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(self._wp.ScopedDevice(self.wp_device))
        if self.device.type == "cuda":
            stream = self._wp.stream_from_torch(torch.cuda.current_stream(self.device))
            stack.enter_context(self._wp.ScopedStream(stream))
        return stack

    def _launch(self, name: str, body: Callable[[], None]) -> None:
        """Run ``body``'s Warp launches on torch's stream: on a GPU as the CUDA graph ``name``,
        captured on the first call (a capture needs a stream of its own: Warp's, not torch's
        default one), so that a step or a reset costs one launch instead of hundreds."""
        import torch

        wp = self._wp
        if self.device.type == "cuda" and name not in self._graphs:
            torch.cuda.current_stream(self.device).synchronize()
            try:
                with wp.ScopedDevice(self.wp_device), wp.ScopedCapture() as capture:
                    body()
                self._graphs[name] = capture.graph
            except Exception as exc:  # launching kernel by kernel is slower, not wrong
                log.warning("MuJoCo Warp: no CUDA graph for %s (%s); launching kernel by kernel", name, exc)
                self._graphs[name] = None
        with self._on_device():
            graph = self._graphs.get(name)
            if graph is not None:
                wp.capture_launch(graph)
            else:
                body()

    def _simulate(self) -> None:
        """``frame_skip`` physics steps of every world."""
        mjw = self._mjw

        def step() -> None:
            for _ in range(self.frame_skip):
                mjw.step(self.model, self.data)

        self._launch("step", step)

    def _advance(self, actions: Any, restart: Any) -> tuple[Any, Any]:
        before = self._before_step()
        self.ctrl[:] = actions
        self._simulate()
        if bool(restart.any()):
            self._reset_ids(restart.nonzero().flatten().cpu().numpy())  # their step is discarded
        return self._reward(actions, before), self._terminated()

    def buffer_overflows(self) -> Any:
        """Per world, whether its last step overflowed a contact or constraint buffer (a bool
        tensor; a world's flag is cleared when it is reset). Solver iteration limits, which
        MuJoCo Warp flags in the same bitmask, are not overflows."""
        return (self._overflow & self._buffer_bits) != 0

    def check_buffers(self, overflowed: Any = None) -> None:
        """Raise, naming the sizes, when a step overflowed the contact or constraint buffers
        (``overflowed``: per-world flags gathered over several steps; default: the last step)."""
        overflowed = self.buffer_overflows() if overflowed is None else overflowed
        if not bool(overflowed.any()):
            return
        worlds = overflowed.nonzero().flatten().tolist()
        raise RuntimeError(
            f"MuJoCo Warp's contact or constraint buffers overflowed in {len(worlds)} world(s) "
            f"(nconmax={self.data.naconmax // self.num_envs} contacts, njmax={self.data.njmax} rows "
            "per world)"
        )
