"""The one list of learners.

A learner class registers itself with :func:`register`; its ``algorithm`` (the config's
``algorithm:`` value) and ``kind`` (``rl`` or ``supervised``) are its key. The YAML configs, the
CLI and the Python API all find learners here, and config validation reads each learner's
declared hyperparameters (:meth:`Learner.config_keys`) from the class it finds.

The kind of a config comes from its env: an id in the ``supervised/`` namespace is a few-shot
family, any other id a Gymnasium env. So ``algorithm: fomaml`` is RL FOMAML on
``metarl/HalfCheetahVel-v0`` and supervised FOMAML on ``supervised/Sinusoid``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from metarl.errors import ConfigError

if TYPE_CHECKING:
    from metarl.learners.base import Learner

KINDS = ("rl", "supervised")
_REGISTRY: dict[tuple[str, str], type[Learner]] = {}
L = TypeVar("L", bound="type[Learner]")


def register(cls: L) -> L:
    """Class decorator: add a learner to the registry under (``cls.kind``, ``cls.algorithm``)."""
    key = (cls.kind, cls.algorithm)
    if cls.kind not in KINDS or not cls.algorithm:
        raise ValueError(f"{cls.__name__}: a learner needs an algorithm name and a kind in {KINDS}")
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ValueError(
            f"{cls.kind} learner {cls.algorithm!r} is already registered ({_REGISTRY[key].__name__})"
        )
    _REGISTRY[key] = cls
    return cls


def _load_builtin() -> None:
    import metarl.learners.fomaml  # noqa: F401
    import metarl.learners.maml_trpo  # noqa: F401
    import metarl.learners.promp  # noqa: F401
    import metarl.learners.reptile  # noqa: F401
    import metarl.learners.supervised  # noqa: F401


#: The id namespace of few-shot families (``supervised/Sinusoid``); Gymnasium ids are RL.
SUPERVISED_NAMESPACE = "supervised/"


def kind_of(env: Any) -> str:
    """``supervised`` for a few-shot family (a family object, or an id in the ``supervised/``
    namespace, such as those of :data:`metarl.fewshot.FEWSHOT_FAMILIES`), ``rl`` for a
    Gymnasium env id."""
    if not isinstance(env, str) or env.startswith(SUPERVISED_NAMESPACE):
        return "supervised"
    return "rl"


def algorithms(kind: str) -> list[str]:
    """The registered algorithm names of one kind, in registration order."""
    _load_builtin()
    return [name for k, name in _REGISTRY if k == kind]


def learners() -> list[type[Learner]]:
    """Every registered learner class."""
    _load_builtin()
    return list(_REGISTRY.values())


def learner_class(
    algorithm: str, env: Any, label: Callable[[str], str] = lambda key: f"config key {key!r}"
) -> type[Learner]:
    """The learner class for ``algorithm`` on ``env``, or a one-line :class:`ConfigError`
    naming what is allowed for that kind of env."""
    _load_builtin()
    kind = kind_of(env)
    cls = _REGISTRY.get((kind, algorithm))
    if cls is None:
        other = [k for k in KINDS if k != kind and (k, algorithm) in _REGISTRY]
        where = f"a supervised few-shot family ({env})" if kind == "supervised" else f"an RL env ({env})"
        note = (
            f"; {algorithm!r} is {'an RL' if other[0] == 'rl' else 'a supervised'} learner" if other else ""
        )
        raise ConfigError(
            f"{label('algorithm')} must be one of {', '.join(algorithms(kind))} on {where}, "
            f"got {algorithm!r}{note}"
        )
    return cls
