"""Experiment configs: a typed schema, YAML loading, ``--set`` overrides and validation.

Every config has the same top-level keys (``env``, ``algorithm``, ``seed``, ``iterations``,
``meta_batch_size``, ``episodes_per_task``, ``horizon``); nested sections group the policy, the
inner loop, the meta-optimizer and the sampler. Unknown keys, wrong types and out-of-range
values raise :class:`ConfigError` with a one-line message that names the key and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metarl.device import DEVICE_ALLOWED, DEVICE_PATTERN
from metarl.errors import ConfigError

ESTIMATORS = ("vpg", "lvc")
OUTER_OPTIMIZERS = ("trpo", "adam")
ACTIVATIONS = ("relu", "tanh")
SAMPLER_BACKENDS = ("auto", "sync", "async", "ray", "warp")
PPO_VEC_ENVS = ("dummy", "subprocess", "batched")


@dataclass
class PolicyConfig:
    """The Gaussian MLP policy."""

    hidden_sizes: list[int] = field(default_factory=lambda: [100, 100])
    activation: str = "relu"
    init_log_std: float = 0.0
    # The Gaussian mean head's initial weights are PyTorch's times this, its bias 0: the initial
    # policy centred on the zero action whatever the seed (1.0 with the bias kept: PyTorch's init).
    init_output_scale: float = 0.01
    # Map policy actions from [-1, 1] onto a bounded Box action space (as rllab's `normalize`).
    rescale_actions: bool = True


@dataclass
class InnerConfig:
    """The inner (adaptation) loop: ``steps`` vanilla-PG steps of size ``lr``."""

    lr: float = 0.1
    steps: int = 1
    first_order: bool = False
    estimator: str = "vpg"  # inner surrogate: vpg (MAML) or lvc (ProMP's low-variance curvature)


@dataclass
class TRPOConfig:
    """The outer TRPO step on the post-adaptation surrogate."""

    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    ls_max_steps: int = 15
    ls_backtrack_ratio: float = 0.8
    # Fraction of the meta-batch's tasks whose KL Hessian shapes the step (1.0: all, exact), or
    # "auto": exact on a GPU, and on the CPU when a batch of episodes has at most
    # AUTO_EXACT_CPU_STEPS env steps, else AUTO_CPU_FRACTION (see curvature_fraction).
    curvature_tasks: float | str = "auto"


@dataclass
class SamplerConfig:
    """Where rollouts run. ``auto`` takes MuJoCo Warp when the learner is on a GPU, the family has
    a Warp twin and the ``gpu`` extra is installed; else the family's own vector env if it has
    one (the batched MuJoCo engine, say), else Gymnasium's ``SyncVectorEnv``."""

    backend: str = "auto"
    num_threads: int = 0  # threads of a batched engine; 0 = the usable cores
    # Task groups the sampler steps in turn, so that a batched engine's physics runs while the
    # policy acts for the next group (1: no pipelining; 0: auto, 2 from 4 usable cores on).
    groups: int = 0
    num_workers: int = 2  # ray: actors, each sampling a shard of the meta-batch's tasks
    # warp: MuJoCo Warp's contact and constraint buffers per world (0: the family's measured sizes)
    nconmax: int = 0
    njmax: int = 0
    # warp: MuJoCo Warp's deterministic contact order and sums (the same seed gives the same
    # episodes on a GPU); false steps the ant about 5x faster on an H100, not reproducibly
    deterministic: bool = True
    ray_address: str = ""  # ray: the cluster to join ("" or "local": start a local Ray)


@dataclass
class OuterConfig:
    """The outer step of the first-order learners (``fomaml``, ``reptile``, ``promp``).

    ``optimizer`` picks TRPO or Adam for ``fomaml``; ``lr`` is Adam's step size (``fomaml``
    with Adam, ``promp``); ``steps`` is the number of Adam steps per iteration.
    """

    optimizer: str = "trpo"
    lr: float = 1e-3
    steps: int = 1


@dataclass
class ProMPConfig:
    """ProMP's outer objective (Rothfuss et al. 2019): a PPO-clip surrogate on the
    post-adaptation episodes plus a penalty on each task's inner KL, fixed at
    ``init_inner_kl_coef`` as in the authors' experiments, or adapted towards
    ``target_inner_kl`` with ``adaptive_inner_kl``. ``max_outer_kl`` bounds the mean KL by which
    one iteration's Adam steps move the adapted policies (0: no bound)."""

    clip_eps: float = 0.3
    target_inner_kl: float = 0.01
    init_inner_kl_coef: float = 5e-4
    adaptive_inner_kl: bool = False
    max_outer_kl: float = 0.03


@dataclass
class ReptileConfig:
    """Reptile's outer step: θ ← θ + ε · mean_i(W_i − θ)."""

    epsilon: float = 0.1


@dataclass
class SupervisedConfig:
    """Few-shot supervised experiments (``env: supervised/Sinusoid``)."""

    k_shot: int = 10  # support examples per task (the paper trains with K = 10)
    k_query: int = 10  # query examples per task for the meta-loss
    imaml_lambda: float = 2.0  # iMAML's proximal strength λ
    cg_iters: int = 5  # iMAML's conjugate-gradient iterations


@dataclass
class CheckpointConfig:
    """What a run directory keeps besides ``checkpoint.pt`` (the latest) and ``best.pt``."""

    keep_last: int = 3  # checkpoint-<iteration>.pt files of the last iterations; 0 keeps none


@dataclass
class PPOConfig:
    """Stable-Baselines3 PPO's settings for the ``pretrained`` and ``oracle`` baselines that
    ``metarl baseline`` builds from an RL config; the meta-learners ignore them. The defaults are
    SB3's own (and ``num_envs: 4`` envs stepped in turn in one process)."""

    num_envs: int = 4  # parallel envs (``metarl baseline --num-envs`` sets it too)
    # dummy: the envs step in turn in this process; subprocess: one process per env; batched:
    # the sub-envs of the family's batched engine (on sampler.num_threads threads)
    vec_env: str = "dummy"
    n_steps: int = 2048  # env steps per env per rollout; a rollout is n_steps * num_envs
    batch_size: int = 64
    n_epochs: int = 10
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    # Running mean and variance of the observations (SB3's VecNormalize, no clipping). They are
    # saved with the baseline: folded into the first layer of the pretrained policy, applied to
    # the oracle's observations at evaluation.
    normalize_observations: bool = False
    normalize_rewards: bool = False  # scale rewards by a running std of the discounted return


@dataclass
class ValidationConfig:
    """How ``best.pt`` is chosen: θ adapted to a fixed set of validation tasks (a task stream
    of their own, never ``evaluate``'s) and scored as ``evaluate`` scores it."""

    every: int = 10  # iterations between validations (and the run's last); 0: by the training return
    tasks: int = 20  # validation tasks, drawn once per seed


@dataclass
class Config:
    """A whole experiment. Field docs are in the README's config table."""

    env: str = "metarl/Navigation2D-v0"
    algorithm: str = "maml_trpo"
    seed: int = 0
    iterations: int = 500
    meta_batch_size: int = 20
    episodes_per_task: int = 20
    horizon: int = 100
    gamma: float = 0.99
    gae_lambda: float = 1.0
    normalize_advantages: bool = True
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    # Env arguments that replace env_kwargs wherever a policy is scored (validation, evaluate).
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    promp: ProMPConfig = field(default_factory=ProMPConfig)
    reptile: ReptileConfig = field(default_factory=ReptileConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    num_threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    # Where the learner's tensors live: auto (a GPU when there is one), cpu, cuda or cuda:N.
    device: str = "auto"
    # Stop (keeping every checkpoint) after this many iterations in a row without an accepted step.
    max_failed_iterations: int = 10

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def scoring_env_kwargs(self) -> dict[str, Any]:
        """The env arguments a policy is scored with (validation and ``evaluate``): ``env_kwargs``
        with ``eval_env_kwargs`` in place of those of the same names, so that a policy trained on
        a shaped reward (a survival bonus, say) is scored on the reward it is reported on."""
        return {**self.env_kwargs, **self.eval_env_kwargs}


#: The nested sections of a config (``inner``, ``trpo``, ...).
SECTIONS = tuple(name for name, tp in typing.get_type_hints(Config).items() if dataclasses.is_dataclass(tp))

#: Keys every learner takes: what it learns on, how long, where, and what the run keeps.
RUN_KEYS = (
    "env",
    "algorithm",
    "seed",
    "iterations",
    "device",
    "num_threads",
    "max_failed_iterations",
    "checkpoint.keep_last",
    "validation.every",
    "validation.tasks",
)
#: Keys a continued run may change (``metarl train --resume DIR --set KEY=VALUE``): how long it
#: runs, the threads it uses and what it keeps. None of them changes what an iteration computes.
RESUME_KEYS = (
    "iterations",
    "num_threads",
    "max_failed_iterations",
    "checkpoint.keep_last",
    "sampler.num_threads",
)
#: Keys every RL learner takes: the episodes, their advantages, the policy, the inner step and
#: the sampler.
RL_KEYS = (
    "meta_batch_size",
    "episodes_per_task",
    "horizon",
    "gamma",
    "gae_lambda",
    "normalize_advantages",
    "env_kwargs",
    "eval_env_kwargs",
    "policy.hidden_sizes",
    "policy.activation",
    "policy.init_log_std",
    "policy.init_output_scale",
    "policy.rescale_actions",
    "inner.lr",
    "inner.steps",
    "sampler.backend",
    "sampler.num_threads",
    "sampler.groups",
    "sampler.nconmax",
    "sampler.njmax",
    "sampler.deterministic",
    "sampler.num_workers",
    "sampler.ray_address",
)
#: The TRPO meta-step's keys (MAML-TRPO, and FOMAML with ``outer.optimizer: trpo``).
TRPO_KEYS = (
    "trpo.max_kl",
    "trpo.cg_iters",
    "trpo.cg_damping",
    "trpo.ls_max_steps",
    "trpo.ls_backtrack_ratio",
    "trpo.curvature_tasks",
)
#: The PPO baselines' keys (``metarl baseline``): an RL config may set them, and no learner reads them.
PPO_KEYS = tuple(f"ppo.{f.name}" for f in dataclasses.fields(PPOConfig))
#: Keys every supervised few-shot learner takes.
SUPERVISED_KEYS = (
    "meta_batch_size",
    "policy.hidden_sizes",
    "policy.activation",
    "inner.lr",
    "supervised.k_shot",
    "supervised.k_query",
)

#: The Python keyword of a config key, where the key's last part alone would be ambiguous.
_PYTHON_NAMES = {
    "inner.lr": "inner_lr",
    "inner.steps": "inner_steps",
    "inner.estimator": "inner_estimator",
    "outer.lr": "outer_lr",
    "outer.steps": "outer_steps",
    "outer.optimizer": "outer_optimizer",
    "sampler.backend": "sampler",
    "sampler.num_threads": "sampler_threads",
    "sampler.groups": "sampler_groups",
    "sampler.nconmax": "warp_nconmax",
    "sampler.njmax": "warp_njmax",
    "sampler.deterministic": "warp_deterministic",
    "sampler.num_workers": "ray_workers",
    "sampler.ray_address": "ray_address",
    "checkpoint.keep_last": "keep_last",
    "validation.every": "validation_every",
    "validation.tasks": "validation_tasks",
}


def python_name(key: str) -> str:
    """The learner classes' keyword for a config key: ``trpo.max_kl`` -> ``max_kl``,
    ``inner.lr`` -> ``inner_lr``."""
    return _PYTHON_NAMES.get(key, key.rsplit(".", 1)[-1])


#: What each hyperparameter does (the learners' docstrings list these).
KEY_DOCS = {
    "seed": "seeds the tasks, the episodes and the initial parameters",
    "iterations": "meta-iterations of a config's run (Python: ``learn(iterations)``)",
    "device": "where the learner's tensors live: auto (a GPU when there is one), cpu, cuda or cuda:N",
    "num_threads": "torch intra-op threads; 0 keeps torch's default",
    "max_failed_iterations": "stop after this many iterations in a row without an accepted meta-step",
    "checkpoint.keep_last": "numbered checkpoints a run directory keeps; 0 keeps none",
    "validation.every": (
        "validate every this many iterations (and at the run's last) on fixed validation tasks; "
        "their return after inner.steps adaptation steps (supervised: -loss) picks best.pt; "
        "0: best.pt by the training post-adaptation return"
    ),
    "validation.tasks": "validation tasks, drawn once from a stream of their own (never evaluate's)",
    "meta_batch_size": "tasks per meta-iteration",
    "episodes_per_task": "episodes sampled per task for each adaptation step",
    "horizon": "the most steps of one episode",
    "gamma": "discount factor",
    "gae_lambda": "GAE's lambda (1: Monte Carlo returns minus the linear baseline)",
    "normalize_advantages": "normalize each task's advantages",
    "env_kwargs": "keyword arguments of the env's constructor",
    "eval_env_kwargs": (
        "env arguments that replace env_kwargs of the same names where a policy is scored "
        "(validation, evaluate): train on a shaped reward, score on the reported one"
    ),
    "policy.hidden_sizes": "hidden layer widths of the MLP",
    "policy.activation": "relu or tanh",
    "policy.init_log_std": "initial log standard deviation of Gaussian actions",
    "policy.init_output_scale": (
        "scale of the Gaussian mean head's initial weights (bias 0): near-zero initial mean actions; "
        "1.0 = PyTorch's default init"
    ),
    "policy.rescale_actions": "map actions in [-1, 1] onto a bounded Box action space",
    "inner.lr": "the inner (adaptation) step size alpha",
    "inner.steps": "inner gradient steps per task",
    "inner.first_order": "drop the second-order terms of the meta-gradient",
    "inner.estimator": "inner surrogate: vpg (MAML's score function) or lvc (ProMP's low-variance curvature)",
    "trpo.max_kl": "TRPO's trust region: the mean KL of a meta-step",
    "trpo.cg_iters": "conjugate-gradient iterations of the TRPO step",
    "trpo.cg_damping": "damping added to the KL Hessian",
    "trpo.ls_max_steps": "backtracking line-search steps",
    "trpo.ls_backtrack_ratio": "step shrink factor of the line search",
    "trpo.curvature_tasks": "fraction of tasks whose KL Hessian shapes the step, or auto (exact on a GPU)",
    "outer.optimizer": "the outer step: trpo or adam",
    "outer.lr": "Adam's step size",
    "outer.steps": "Adam steps per meta-iteration",
    "promp.clip_eps": "PPO clip range of the outer surrogate",
    "promp.target_inner_kl": "target of each task's inner KL, with promp.adaptive_inner_kl",
    "promp.init_inner_kl_coef": "coefficient of the inner-KL penalty (its start, if adaptive)",
    "promp.adaptive_inner_kl": (
        "halve or double each task's penalty coefficient after an iteration whose inner KL is under "
        "target / 1.5 or over target x 1.5 (false: fixed, as in the ProMP authors' experiments)"
    ),
    "promp.max_outer_kl": (
        "undo the Adam step after which the adapted policies' mean KL from the sampling ones exceeds "
        "this, and end the iteration's outer steps there; a first step over it is halved until it "
        "fits (0: no bound)"
    ),
    "reptile.epsilon": "Reptile's step towards the adapted parameters",
    "supervised.k_shot": "support examples per task",
    "supervised.k_query": "query examples per task for the meta-loss",
    "supervised.imaml_lambda": "iMAML's proximal strength lambda",
    "supervised.cg_iters": "iMAML's conjugate-gradient iterations",
    "sampler.backend": (
        "auto (MuJoCo Warp on a GPU when installed, else the family's batched engine, else sync), "
        "sync, async, ray or warp (MuJoCo Warp on the learner's device; pip install 'metarl[gpu]')"
    ),
    "sampler.num_threads": "threads of a batched engine; 0 = the usable cores",
    "sampler.groups": "task groups pipelined through a batched engine; 0 = auto, 1 = none",
    "sampler.nconmax": "warp: contacts per world MuJoCo Warp allocates; 0 = the family's measured size",
    "sampler.njmax": "warp: constraint rows per world MuJoCo Warp allocates; 0 = the family's measured size",
    "sampler.deterministic": (
        "warp: deterministic contact order and sums, so a seed repeats its episodes on a GPU "
        "(false: faster, not reproducible)"
    ),
    "sampler.num_workers": "Ray actors",
    "sampler.ray_address": "the Ray cluster to join (empty: a local Ray)",
    "ppo.num_envs": "baselines: PPO's parallel envs",
    "ppo.vec_env": (
        "baselines: dummy (envs in turn, one process), subprocess (one process per env) or batched "
        "(the sub-envs of the family's batched engine)"
    ),
    "ppo.n_steps": "baselines: PPO's env steps per env per rollout",
    "ppo.batch_size": "baselines: PPO's minibatch size",
    "ppo.n_epochs": "baselines: PPO's epochs over each rollout",
    "ppo.learning_rate": "baselines: PPO's Adam step size",
    "ppo.gamma": "baselines: PPO's discount factor",
    "ppo.gae_lambda": "baselines: PPO's GAE lambda",
    "ppo.clip_range": "baselines: PPO's clip range",
    "ppo.ent_coef": "baselines: PPO's entropy bonus",
    "ppo.normalize_observations": "baselines: normalize observations by their running mean and std",
    "ppo.normalize_rewards": "baselines: scale rewards by the running std of the discounted return",
}


# The largest seed: NumPy's legacy seeding (SB3's baselines) takes 32-bit seeds.
MAX_SEED = 2**32 - 1
# policy.init_log_std: exp(-5) ~ 0.007 to exp(2) ~ 7.4 as the initial action standard deviation.
LOG_STD_RANGE = (-5.0, 2.0)

# Ranges: key -> (predicate, what is allowed). Every float key is also required to be finite.
_RULES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "seed": (lambda v: 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED} (2**32 - 1)"),
    "iterations": (lambda v: v >= 1, "an integer >= 1"),
    "meta_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "episodes_per_task": (lambda v: v >= 1, "an integer >= 1"),
    "horizon": (lambda v: v >= 1, "an integer >= 1"),
    "gamma": (lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "gae_lambda": (lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
    "num_threads": (lambda v: v >= 0, "an integer >= 0 (0 = torch's default)"),
    "policy.hidden_sizes": (
        lambda v: len(v) >= 1 and all(h >= 1 for h in v),
        "a non-empty list of integers >= 1",
    ),
    "policy.init_log_std": (
        lambda v: LOG_STD_RANGE[0] <= v <= LOG_STD_RANGE[1],
        f"a number in [{LOG_STD_RANGE[0]:g}, {LOG_STD_RANGE[1]:g}], the log of the initial action std",
    ),
    "policy.init_output_scale": (lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
    "policy.activation": (lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}"),
    "inner.lr": (lambda v: v > 0, "a number > 0"),
    "inner.steps": (lambda v: v >= 1, "an integer >= 1"),
    "inner.estimator": (lambda v: v in ESTIMATORS, f"one of {', '.join(ESTIMATORS)}"),
    "outer.optimizer": (lambda v: v in OUTER_OPTIMIZERS, f"one of {', '.join(OUTER_OPTIMIZERS)}"),
    "outer.lr": (lambda v: v > 0, "a number > 0"),
    "outer.steps": (lambda v: v >= 1, "an integer >= 1"),
    "promp.clip_eps": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "reptile.epsilon": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "supervised.k_shot": (lambda v: v >= 1, "an integer >= 1"),
    "supervised.k_query": (lambda v: v >= 1, "an integer >= 1"),
    "supervised.imaml_lambda": (lambda v: v > 0, "a number > 0"),
    "supervised.cg_iters": (lambda v: v >= 1, "an integer >= 1"),
    "promp.target_inner_kl": (lambda v: v > 0, "a number > 0"),
    "promp.init_inner_kl_coef": (lambda v: v >= 0, "a number >= 0"),
    "promp.max_outer_kl": (lambda v: v >= 0, "a number >= 0 (0 = no bound)"),
    "trpo.max_kl": (lambda v: v > 0, "a number > 0"),
    "trpo.cg_iters": (lambda v: v >= 1, "an integer >= 1"),
    "trpo.cg_damping": (lambda v: v >= 0, "a number >= 0"),
    "trpo.ls_max_steps": (lambda v: v >= 1, "an integer >= 1"),
    "trpo.ls_backtrack_ratio": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "trpo.curvature_tasks": (
        lambda v: v == "auto" or (_float_value(v) is not None and 0 < _float_value(v) <= 1),
        "auto or a number in (0, 1]",
    ),
    "device": (lambda v: bool(DEVICE_PATTERN.match(v)), DEVICE_ALLOWED),
    "sampler.backend": (lambda v: v in SAMPLER_BACKENDS, f"one of {', '.join(SAMPLER_BACKENDS)}"),
    "sampler.num_threads": (lambda v: v >= 0, "an integer >= 0 (0 = the usable cores)"),
    "sampler.num_workers": (lambda v: v >= 1, "an integer >= 1"),
    "sampler.groups": (lambda v: v >= 0, "an integer >= 0 (0 = auto, 1 = no pipelining)"),
    "sampler.nconmax": (lambda v: v >= 0, "an integer >= 0 (0 = the family's measured size)"),
    "sampler.njmax": (lambda v: v >= 0, "an integer >= 0 (0 = the family's measured size)"),
    "checkpoint.keep_last": (lambda v: v >= 0, "an integer >= 0"),
    "validation.every": (
        lambda v: v >= 0,
        "an integer >= 0 (0 = no validation: best.pt by the training return)",
    ),
    "validation.tasks": (lambda v: v >= 1, "an integer >= 1"),
    "max_failed_iterations": (lambda v: v >= 1, "an integer >= 1"),
    "ppo.num_envs": (lambda v: v >= 1, "an integer >= 1"),
    "ppo.vec_env": (lambda v: v in PPO_VEC_ENVS, f"one of {', '.join(PPO_VEC_ENVS)}"),
    "ppo.n_steps": (lambda v: v >= 2, "an integer >= 2"),
    "ppo.batch_size": (lambda v: v >= 2, "an integer >= 2"),
    "ppo.n_epochs": (lambda v: v >= 1, "an integer >= 1"),
    "ppo.learning_rate": (lambda v: v > 0, "a number > 0"),
    "ppo.gamma": (lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "ppo.gae_lambda": (lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
    "ppo.clip_range": (lambda v: v > 0, "a number > 0"),
    "ppo.ent_coef": (lambda v: v >= 0, "a number >= 0"),
}


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key the schema accepts, e.g. ``inner.lr``."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            keys.extend(valid_keys(hints[f.name], key + "."))
        else:
            keys.append(key)
    return keys


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _float_value(value: Any) -> float | None:
    """``value`` as a float: ints, floats, and strings such as ``'1e-3'`` (YAML 1.1 reads
    scientific notation without a dot as a string); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int too large for a float
            return math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


Label = typing.Callable[[str], str]


def yaml_label(key: str) -> str:
    """How an error names a config key: ``config key 'inner.lr'``."""
    return f"config key {key!r}"


def _coerce(key: str, value: Any, tp: Any, label: Label = yaml_label) -> Any:
    """Check ``value`` against the annotation ``tp``; ints (and numeric strings such as
    ``'1e-3'``) are accepted where floats are, and floats must be finite."""
    origin = typing.get_origin(tp)
    what = label(key.split("[")[0]) + key[len(key.split("[")[0]) :]
    if tp is float:
        number = _float_value(value)
        if number is None:
            raise ConfigError(f"{what} must be a number, got {value!r}")
        if not math.isfinite(number):
            allowed = f" (allowed: {_RULES[key][1]})" if key in _RULES else ""
            raise ConfigError(f"{what} must be a finite number, got {value!r}{allowed}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{what} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{what} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{what} must be a string, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{what} must be a list of {_type_name(item)}, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item, label) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{what} must be a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        number = _float_value(value)
        if float in typing.get_args(tp) and number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{what} must be a finite number, got {value!r}")
            return number
        return value
    raise ConfigError(f"{what}: unsupported type {tp!r}")


def _unknown_key(key: str) -> ConfigError:
    keys = valid_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"unknown config key {key!r}; {hint}valid keys: {', '.join(keys)}")


def _build(cls: type, data: dict[str, Any], prefix: str = "", label: Label = yaml_label) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'top level'!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        key = prefix + str(name)
        if name not in names:
            raise _unknown_key(key)
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value if value is not None else {}, key + ".", label)
        else:
            kwargs[name] = _coerce(key, value, tp, label)
            if key in _RULES:
                ok, allowed = _RULES[key]
                if not ok(kwargs[name]):
                    raise ConfigError(f"{label(key)} must be {allowed}, got {value!r}")
    return cls(**kwargs)


def given_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys a (YAML-like) dict sets, e.g. ``['seed', 'inner.lr']``; ``env_kwargs``
    and ``eval_env_kwargs`` count as one key each."""
    keys = []
    for name, value in data.items():
        key = prefix + str(name)
        if isinstance(value, dict) and not prefix and name in SECTIONS:
            keys.extend(given_keys(value, key + "."))
        else:
            keys.append(key)
    return keys


def config_from_dict(data: dict[str, Any], strict: bool = True, label: Label = yaml_label) -> Config:
    """Build and validate a :class:`Config` from a plain (YAML-like) dict.

    The learner is looked up in the registry (:mod:`metarl.learners.registry`) from
    ``algorithm`` and the kind of ``env``. With ``strict`` (configs users write), a key the
    learner does not take is an error; saved configs (checkpoints) are read with
    ``strict=False``, as they hold every key.
    """
    from metarl.learners.registry import learner_class

    config = _build(Config, data, label=label)
    cls = learner_class(config.algorithm, config.env, label)
    if strict:
        taken = set(cls.config_keys())
        if cls.kind == "rl":  # the config's PPO baselines read them
            taken.update(PPO_KEYS)
        for key in given_keys(data):
            if key not in taken:
                raise ConfigError(
                    f"{label(key)} is not used by {cls.algorithm} ({cls.__name__}); it takes: "
                    f"{', '.join(k for k in cls.config_keys() if k not in RUN_KEYS)}"
                )
    ppo = config.ppo
    if ppo.batch_size > ppo.n_steps * ppo.num_envs:
        rollout = f"{ppo.n_steps} * {ppo.num_envs} = {ppo.n_steps * ppo.num_envs}, one rollout"
        raise ConfigError(
            f"{label('ppo.batch_size')} must be at most ppo.n_steps * ppo.num_envs ({rollout}), "
            f"got {ppo.batch_size}"
        )
    return config


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["inner.lr=0.05", "seed=3"]`` into a nested dict; values are parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in valid_keys() and not key.startswith(("env_kwargs.", "eval_env_kwargs.")):
            raise _unknown_key(key)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1], 1):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                whole = ".".join(parts[:depth])
                raise ConfigError(
                    f"--set {key}: {whole} was already set to {node!r} by another --set; give one of them"
                )
        node[parts[-1]] = value
    return nested


def resume_overrides(overrides: list[str]) -> dict[str, Any]:
    """``--set`` overrides for a continued run, as :func:`parse_overrides` gives them; a key
    outside :data:`RESUME_KEYS` is refused, as it would change the run's computation midway."""
    parsed = parse_overrides(overrides)
    for key in given_keys(parsed):
        if key not in RESUME_KEYS:
            raise ConfigError(
                f"--set {key}: a continued run can change only {', '.join(RESUME_KEYS)}; {key} "
                "changes what an iteration computes, so start a new run for it"
            )
    return parsed


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``update`` wins."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


#: Keys whose default changed after checkpoints were written without them, with the value those
#: checkpoints trained with: a run resumed from one keeps its rule.
_BEFORE_THE_KEY = {("promp", "adaptive_inner_kl"): True, ("promp", "max_outer_kl"): 0.0}


def saved_config(data: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config dict, completed with what an older metarl ran by default where a
    key that has since changed its default is missing."""
    out = dict(data)
    for (section, key), value in _BEFORE_THE_KEY.items():
        if isinstance(out.get(section), dict) and key not in out[section]:
            out[section] = {**out[section], key: value}
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML experiment config, apply ``--set`` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys, got {type(data).__name__}")
    return config_from_dict(merge(data, parse_overrides(overrides or [])))


#: ``trpo.curvature_tasks: auto`` on the CPU: exact up to this many env steps in a batch of
#: episodes (navigation's 20 × 20 × 100), else this fraction of the tasks. Cheetah's 40 × 20 ×
#: 200 exactly costs 3–4× the meta-step of 10 of its tasks; at trained checkpoints 10 tasks
#: got 62–87% of the exact step's surrogate gain and 4 tasks only 39–62%, in about the same time
#: (``metarl bench curvature``; the README's benchmarks).
AUTO_EXACT_CPU_STEPS = 50_000
AUTO_CPU_FRACTION = 0.25


def curvature_fraction(config: Config, device_type: str) -> float:
    """The fraction of tasks whose KL Hessian shapes the TRPO step, ``auto`` resolved for
    ``device_type``: on a GPU the exact Hessian costs about what a subsample costs."""
    value = config.trpo.curvature_tasks
    if value != "auto":
        return float(value)
    if device_type != "cpu":
        return 1.0
    steps = config.meta_batch_size * config.episodes_per_task * config.horizon
    return 1.0 if steps <= AUTO_EXACT_CPU_STEPS else AUTO_CPU_FRACTION
