"""What every learner shares: construction from keyword arguments or a config, the training loop
(``learn``), saving and loading, and the seeds.

A learner is one class per algorithm (:class:`~metarl.learners.maml_trpo.MAMLTRPO`, ...). Its
keyword arguments are its hyperparameters, validated by the same rules as the YAML configs (both
read the class's :meth:`Learner.config_keys`), so a learner built from Python and the one built
from the equivalent config are the same object, iteration for iteration::

    learner = metarl.MAMLTRPO("metarl/Navigation2D-v0", meta_batch_size=20, seed=0)
    learner.learn(iterations=100, log_dir="runs/nav")   # TensorBoard and checkpoints there
    learner.save("nav.pt")

Subclasses say how one meta-iteration goes (:meth:`Learner.train_iteration`) and what optimizer
state a checkpoint keeps (:meth:`Learner.optimizer_state`).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm import tqdm

from metarl.checkpoint import atomic_save, load_checkpoint
from metarl.config import (
    KEY_DOCS,
    RUN_KEYS,
    Config,
    config_from_dict,
    python_name,
)
from metarl.device import resolve_device
from metarl.errors import ConfigError, MetarlError, TrainingStopped

log = logging.getLogger(__name__)

#: Independent task streams for the same seed: training, held-out evaluation, ``adapt``, and the
#: validation tasks that choose ``best.pt`` (never those ``evaluate`` scores).
TRAIN_STREAM, EVAL_STREAM, ADAPT_STREAM, VALID_STREAM = 0, 1, 2, 3

#: ``callback(learner, metrics)`` after every iteration; returning ``False`` stops ``learn``.
Callback = Callable[["Learner", dict[str, float]], Any]


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor on the CPU: checkpoints load on machines without a GPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def score(metrics: dict[str, float]) -> float:
    """An iteration's training score: the post-adaptation return (RL) or −loss (supervised) on
    its own meta-batch. ``best.pt`` maximises it only with ``validation.every: 0``."""
    if "return/post_adaptation" in metrics:
        return metrics["return/post_adaptation"]
    return -metrics["loss/post_adaptation"]


def summary(metrics: dict[str, float]) -> dict[str, str]:
    """The progress bar's figures."""
    out = {}
    for key, name, fmt in [
        ("return/pre_adaptation", "pre", ".1f"),
        ("return/post_adaptation", "post", ".1f"),
        ("loss/pre_adaptation", "pre", ".3f"),
        ("loss/post_adaptation", "post", ".3f"),
        ("meta/kl", "kl", ".4f"),
        ("sampler/env_steps_per_s", "sps", ".0f"),
        ("validation/score", "valid", ".4g"),
    ]:
        if key in metrics:
            out[name] = format(metrics[key], fmt)
    return out


def _set(nested: dict[str, Any], key: str, value: Any) -> None:
    node = nested
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


class Learner:
    """Base of every learner: its config, parameters, seeds and training loop.

    Subclasses set ``algorithm`` (the config's name), ``kind`` (``rl`` or ``supervised``) and
    ``hyperparameters`` (the config keys they take beyond those of their kind), and register
    with :func:`metarl.learners.registry.register`.
    """

    algorithm: ClassVar[str] = ""
    kind: ClassVar[str] = "rl"
    #: Config keys this learner takes beyond :data:`~metarl.config.RUN_KEYS` and its kind's.
    hyperparameters: ClassVar[tuple[str, ...]] = ()
    #: Config keys every learner of this kind takes (set by the kind's base class).
    kind_keys: ClassVar[tuple[str, ...]] = ()

    config: Config
    policy: torch.nn.Module

    # --- construction ------------------------------------------------------------------------
    def __init__(self, env: Any, **kwargs: Any) -> None:
        self._setup(self.config_from_kwargs(env, kwargs))
        self._check_env()
        self._build(policy=None, eager=True)

    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        """Every config key this learner takes."""
        keys = [*RUN_KEYS, *cls.kind_keys, *cls.hyperparameters]
        return tuple(dict.fromkeys(keys))

    @classmethod
    def keywords(cls) -> dict[str, str]:
        """Python keyword -> config key, for every hyperparameter the constructor takes."""
        skip = ("env", "algorithm", "iterations")
        return {python_name(k): k for k in cls.config_keys() if k not in skip}

    @classmethod
    def config_from_kwargs(cls, env: Any, kwargs: dict[str, Any]) -> Config:
        """The :class:`Config` of ``cls(env, **kwargs)``, validated like a YAML config; errors
        name the keyword argument and what it allows."""
        names = cls.keywords()
        data: dict[str, Any] = {"env": env, "algorithm": cls.algorithm}
        for name, value in kwargs.items():
            if name not in names:
                close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(
                    f"{cls.__name__}() got an unexpected keyword argument {name!r}; {hint}"
                    f"it takes: {', '.join(names)}"
                )
            _set(data, names[name], value)
        if not isinstance(env, str):
            raise ConfigError(f"{cls.__name__}: env must be an env id string, got {type(env).__name__}")
        from metarl.learners.registry import kind_of, learners

        if kind_of(env) != cls.kind:
            fitting = ", ".join(c.__name__ for c in learners() if c.kind == kind_of(env))
            what = "a supervised few-shot family" if kind_of(env) == "supervised" else "an RL env"
            raise ConfigError(
                f"{cls.__name__} is a {'supervised' if cls.kind == 'supervised' else 'RL'} learner and "
                f"{env!r} is {what}; its learners are {fitting}"
            )

        def label(key: str) -> str:
            if key == "env":
                return f"{cls.__name__} argument 'env'"
            return f"{cls.__name__} argument {python_name(key)!r}"

        return config_from_dict(data, strict=True, label=label)

    @classmethod
    def from_config(cls, config: Config, policy: torch.nn.Module | None = None) -> Learner:
        """The learner of a validated config (what ``metarl train`` builds); ``policy``, if
        given, replaces the freshly initialised one."""
        learner = cls.__new__(cls)
        learner._setup(config)
        learner._build(policy=policy, eager=True)
        return learner

    def _setup(self, config: Config) -> None:
        self.config = config
        #: Where the learner's tensors live (the policy's device); sampling stays on the CPU.
        self.device = resolve_device(config.device)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.rng = np.random.default_rng([config.seed, TRAIN_STREAM])
        self.generator = torch.Generator().manual_seed(config.seed)
        self.iteration = 0  # iterations completed
        self.env_steps = 0
        #: The best score so far: the validation score (see :meth:`validate`), or with
        #: ``validation.every: 0`` the training score (:func:`score`); ``best.pt`` holds its θ.
        self.best_return = -float("inf")
        self.failed_in_a_row = 0  # iterations since the last accepted meta-step
        #: What the iterations ran on: a :func:`metarl.device.machine` record, with the
        #: iteration it starts from (``from_iteration``), each time a part of the run starts
        #: on a different machine or setting.
        self.machines: list[dict[str, Any]] = []
        self.last_failure = ""  # why the last rejected meta-step was rejected
        #: The checkpoint this learner was loaded from, and its iteration (None: not loaded).
        self.checkpoint: str | None = None
        self.method = config.algorithm  # what evaluation results call it
        self.saved_iteration: int | None = None  # the iteration the run directory's checkpoint holds
        self._run_dir: Path | None = None  # the run directory a loaded learner continues in

    def _init_parameters(self, make: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        """``make()`` under the config's seed, without touching torch's global RNG, then moved to
        the device (initialised on the CPU: the same θ on every device)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            module = make()
        return module.to(self.device)

    def _check_env(self) -> None:
        """Raise a one-line error if the env cannot be learned on (before anything is built)."""

    def _build(self, policy: torch.nn.Module | None, eager: bool) -> None:
        """Make the policy (or take ``policy``), the optimizer and, if ``eager``, the sampler."""
        raise NotImplementedError

    # --- one iteration -----------------------------------------------------------------------
    def train_iteration(self, rng: np.random.Generator, generator: torch.Generator) -> dict[str, float]:
        """One meta-iteration; returns the metrics to log (``meta/accepted`` among them)."""
        raise NotImplementedError

    def optimizer_state(self) -> dict[str, Any]:
        """State kept across iterations besides θ (Adam's moments, ProMP's KL coefficients)."""
        return {}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`optimizer_state` returned."""

    def close(self) -> None:
        """Release the sampler's envs, processes or Ray actors (the learner stays loadable)."""

    def __enter__(self) -> Learner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds: the config, θ, the optimizer state and the RNGs, so
        that training continues exactly where it stopped."""
        return {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "best_return": self.best_return,
            "best_by": self.best_by,
            "failed_in_a_row": self.failed_in_a_row,
            "machines": [dict(m) for m in self.machines],
            "config": self.config.to_dict(),
            "policy": to_cpu(self.policy.state_dict()),
            "algorithm": to_cpu(self.optimizer_state()),
            "rng": {"numpy": self.rng.bit_generator.state, "torch_generator": self.generator.get_state()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the config is the caller's to rebuild)."""
        self.iteration = state.get("iteration", 0)
        self.env_steps = state.get("env_steps", 0)
        self.best_return = state.get("best_return", -float("inf"))
        if state.get("best_by", "training") != self.best_by:  # scores on another scale
            self.best_return = -float("inf")
        self.failed_in_a_row = state.get("failed_in_a_row", 0)
        self.machines = [dict(m) for m in state.get("machines", [])]
        self.policy.load_state_dict(state["policy"])
        if "algorithm" in state:
            self.load_optimizer_state(state["algorithm"])
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]["numpy"]
            self.generator.set_state(state["rng"]["torch_generator"])

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint to ``path`` (atomically), loadable by :func:`metarl.load` and
        ``metarl evaluate``. A file there that is not a metarl checkpoint is left alone."""
        path = Path(path)
        if path.is_dir():
            raise MetarlError(f"save: {str(path)!r} is a directory; give a file name such as model.pt")
        if path.exists():
            try:
                load_checkpoint(path)
            except MetarlError:
                raise MetarlError(
                    f"save: {str(path)!r} exists and is not a metarl checkpoint; it is left as it is"
                ) from None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_save(self.state_dict(), path)
        except OSError as exc:
            raise MetarlError(f"save: cannot write {str(path)!r}: {exc.strerror or exc}") from None
        return path

    # --- the loop ----------------------------------------------------------------------------
    def learn(
        self,
        iterations: int,
        log_dir: str | Path | None = None,
        callback: Callback | None = None,
        progress: bool = False,
        force: bool = False,
    ) -> Learner:
        """Run ``iterations`` more meta-iterations.

        With ``log_dir``, the run goes to that run directory: TensorBoard scalars, ``config.yaml``,
        ``checkpoint.pt`` every iteration and ``best.pt``, the θ with the best validation score
        (see :meth:`validate`; with ``validation.every: 0`` the best training score), see
        :class:`metarl.runs.RunDirectory`; a learner loaded from a run directory continues there.
        ``force`` starts over in a directory that holds another run. Without ``log_dir`` nothing
        is written (validation still runs: its scores reach ``callback``).

        ``callback(learner, metrics)`` runs after every iteration; returning ``False`` stops the
        run after that iteration. Returns the learner, so ``MAMLTRPO(...).learn(10)`` chains.
        """
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ConfigError(f"learn: iterations must be an integer >= 1, got {iterations!r}")
        self.config.iterations = self.iteration + iterations
        from metarl.training import RunLog

        run = None
        if log_dir is not None:
            resumed = self._run_dir is not None and Path(log_dir).resolve() == self._run_dir.resolve()
            run = RunLog(self, Path(log_dir), force=force, resumed=resumed)
        self.metrics: dict[str, float] = {}
        self._record_machine()
        if self.validating:
            self.validation_tasks()  # a validation that cannot run fails now, not iterations later
        bar = None
        with contextlib.ExitStack() as stack:
            if run is not None:
                stack.enter_context(run)
            bar = tqdm(
                range(self.iteration, self.config.iterations),
                initial=self.iteration,
                total=self.config.iterations,
                desc=Path(str(self.config.env)).name,
                disable=not progress,
                dynamic_ncols=True,
            )
            stack.callback(bar.close)
            for _ in bar:
                metrics, improved = self._step(run)
                if run is not None:
                    run.record(metrics, improved)
                self.metrics = metrics
                bar.set_postfix(summary(metrics))
                log.info("iter %d: %s, %.1fs", self.iteration, summary(metrics), metrics["time/iteration_s"])
                if self.failed_in_a_row >= self.config.max_failed_iterations:
                    where = f"the checkpoints in {str(run.path)!r}" if run is not None else "the learner"
                    raise TrainingStopped(
                        f"stopped after {self.failed_in_a_row} iterations in a row without an accepted "
                        f"meta-step (last: {self.last_failure}); {where} hold the last good parameters"
                    )
                if callback is not None and callback(self, metrics) is False:
                    break
        return self

    def _record_machine(self) -> None:
        """Add this machine to :attr:`machines` if the run's last part ran elsewhere."""
        from metarl.device import machine

        here = machine(self.device)
        last = (
            {k: v for k, v in self.machines[-1].items() if k != "from_iteration"} if self.machines else None
        )
        if here != last:
            self.machines.append({"from_iteration": self.iteration, **here})

    def _step(self, run: Any) -> tuple[dict[str, float], bool]:
        """One iteration with its bookkeeping: counters, the guard against failed steps, and
        whether its score is the best so far (the validation score on validated iterations,
        or the training score with ``validation.every: 0``)."""
        before = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        t0 = time.perf_counter()
        metrics = self.train_iteration(self.rng, self.generator)
        elapsed = time.perf_counter() - t0
        if not all(bool(torch.isfinite(p).all()) for p in self.policy.state_dict().values()):
            self.policy.load_state_dict(before)
            kept = (
                f"it was not saved, and {str(run.path)!r} keeps iteration {self.iteration}"
                if run is not None
                else f"the learner keeps the parameters of iteration {self.iteration}"
            )
            raise TrainingStopped(
                f"iteration {self.iteration + 1} made the policy's parameters NaN or infinite; {kept}"
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
        if not self.validating:
            value = score(metrics)
        elif self._validation_due():
            t0 = time.perf_counter()
            metrics.update(self.validate())
            metrics["time/validation_s"] = time.perf_counter() - t0
            value = metrics["validation/score"]
        else:
            return metrics, False
        improved = math.isfinite(value) and value > self.best_return
        if improved:
            self.best_return = value
        if self.validating and math.isfinite(self.best_return):
            metrics["validation/best"] = self.best_return
        return metrics, improved

    def _guard(self, metrics: dict[str, float]) -> None:
        """Count and report rejected meta-steps, non-finite returns and non-finite values the
        learner caught. An iteration whose returns (or losses) are NaN or infinite counts as
        failed even when the learner accepted its step."""
        reason = ""
        if metrics.get("meta/accepted", 1.0) < 1.0:
            reason = f"meta-step rejected ({self.last_failure})"
        elif not math.isfinite(score(metrics)) or not all(
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

    # --- validation: what chooses best.pt -----------------------------------------------------
    @property
    def validating(self) -> bool:
        """Whether ``best.pt`` is chosen by the validation score (``validation.every`` > 0)."""
        return self.config.validation.every > 0

    @property
    def best_by(self) -> str:
        """What :attr:`best_return` measures: ``validation`` or ``training`` (its :func:`score`)."""
        return "validation" if self.validating else "training"

    def _validation_due(self) -> bool:
        """Whether the iteration just completed is validated: every ``validation.every``-th, and
        the run's last (so that a run shorter than ``every`` has a ``best.pt`` too)."""
        every = self.config.validation.every
        return every > 0 and (self.iteration % every == 0 or self.iteration == self.config.iterations)

    def validation_tasks(self) -> list[Any]:
        """The ``validation.tasks`` tasks θ is validated on: drawn from the seed's own validation
        stream, so the same for the whole run (and across resumes), and independent of the
        training tasks and of the held-out tasks ``evaluate`` draws for any seed."""
        raise NotImplementedError

    def _validation_rng(self) -> tuple[np.random.Generator, torch.Generator]:
        """Fresh generators for one validation's episodes (or support and query sets): the same
        at every validation, so scores differ only by θ, and separate from the training RNGs
        (validating never changes what training does)."""
        rng = np.random.default_rng([self.config.seed, VALID_STREAM, 1])
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        return rng, generator

    def validate(self) -> dict[str, float]:
        """Adapt θ to the :meth:`validation_tasks` with ``inner.steps`` steps, as ``evaluate``
        adapts (θ itself is unchanged), and score it: ``validation/score`` (the post-adaptation
        return, or −loss for supervised learners) and the figure after each step
        (``validation/return_after_<k>_steps`` or ``validation/loss_after_<k>_steps``)."""
        raise NotImplementedError

    # --- adaptation and evaluation (per kind) --------------------------------------------------
    def evaluate(self, num_tasks: int = 40, steps: int = 3, seed: int = 0, **kwargs: Any) -> dict[str, Any]:
        """Score on ``num_tasks`` held-out tasks after 0..``steps`` adaptation steps: the dict
        ``metarl evaluate --json`` writes."""
        raise NotImplementedError

    def __repr__(self) -> str:
        name, env = type(self).__name__, self.config.env
        return f"{name}({env!r}, iteration={self.iteration}, device={str(self.device)!r})"


def hyperparameter_doc(cls: type[Learner]) -> str:
    """The keyword arguments of ``cls`` with their defaults and meaning, for its docstring."""
    defaults = Config().to_dict()

    def default(key: str) -> Any:
        node: Any = defaults
        for part in key.split("."):
            node = node[part]
        return node

    lines = ["Keyword arguments (the config key; default; meaning):", ""]
    for name, key in cls.keywords().items():
        lines.append(f"    {name} ({key}; {default(key)!r}): {KEY_DOCS.get(key, '')}")
    return "\n".join(lines)


def document(cls: type[Learner]) -> type[Learner]:
    """Append the hyperparameter list to a learner's docstring (so ``help()`` shows it)."""
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\n" + hyperparameter_doc(cls) + "\n"
    return cls


def load(
    path: str | Path,
    device: str | None = None,
    which: str = "latest",
    tasks: Any = None,
    strict_device: bool = False,
    overrides: list[str] | None = None,
) -> Learner:
    """The learner saved in ``path``: a checkpoint file, or a run directory (its ``latest`` or
    ``best`` checkpoint). Its config, parameters, optimizer state and RNGs come back, so
    ``learn`` continues exactly; a run directory is continued in place by ``learn(n, log_dir=path)``.
    ``device`` overrides the config's (a config's GPU device that this machine lacks becomes
    ``auto`` unless ``strict_device``); ``tasks`` gives a supervised learner its few-shot family
    when it was trained on a family object rather than a registered id. ``overrides``
    (``["iterations=1000", "num_threads=8"]``) change the keys a continued run may change,
    :data:`metarl.config.RESUME_KEYS`."""
    from metarl.config import config_from_dict as _from_dict
    from metarl.config import merge, resume_overrides, saved_config
    from metarl.evaluation import checkpoint_path
    from metarl.learners.registry import learner_class

    file = checkpoint_path(path, which)
    state = load_checkpoint(file)
    if state.get("method") == "oracle":
        raise MetarlError(
            f"{str(file)!r} is the oracle baseline (an SB3 policy that sees the task); score it with "
            "metarl evaluate"
        )
    changes = resume_overrides(overrides) if overrides else {}
    config = _from_dict(merge(saved_config(state["config"]), changes), strict=False)
    if device is not None:
        resolve_device(device)  # a bad value: one line before anything is built
        config.device = device
    elif not strict_device:
        try:
            resolve_device(config.device)
        except ConfigError:  # saved on a GPU, opened where there is none: any machine can load it
            config.device = "auto"
    shapes = state.get("policy")
    if (
        not isinstance(shapes, dict)
        or not shapes
        or not all(isinstance(v, torch.Tensor) for v in shapes.values())
    ):
        raise MetarlError(f"{str(file)!r} holds no policy parameters")
    cls = learner_class(config.algorithm, tasks if tasks is not None else config.env)
    learner = cls.__new__(cls)
    learner._setup(config)
    learner._restore(shapes, file, tasks)
    try:
        learner.load_state_dict({**state, "policy": shapes})
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise MetarlError(f"{str(file)!r}: the policy does not match its config ({first})") from None
    if changes.get("iterations") is not None and config.iterations < learner.iteration:
        raise ConfigError(
            f"--set iterations={config.iterations}: the run already completed {learner.iteration} "
            f"iterations; give at least {learner.iteration}"
        )
    learner.checkpoint = str(file)
    learner.method = state.get("method", config.algorithm)
    learner.saved_iteration = learner.iteration
    if Path(path).is_dir():
        learner._run_dir = Path(path)
    return learner
