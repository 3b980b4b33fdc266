"""Errors that mean "the user asked for something wrong": the CLI prints them in one line."""

from __future__ import annotations


class MetarlError(Exception):
    """Base class for user-facing errors (bad config, unknown env, broken task env, ...)."""


class ConfigError(MetarlError, ValueError):
    """The experiment config is malformed, has unknown keys or out-of-range values."""


class TaskProtocolError(MetarlError, TypeError):
    """A task env does not follow the task protocol; the message says what to fix."""


class EnvNotFoundError(MetarlError, LookupError):
    """An env id is not registered with Gymnasium."""


class EnvFaultError(RuntimeError):
    """An env raised inside a sampler's vector env; the message names the sub-env's task.

    Raised in the sub-env's process (Async workers included), so it is a plain RuntimeError
    that pickles by its message; the sampler turns it into a :class:`SamplerError`.
    """


class SamplerError(MetarlError):
    """Sampling failed: an env raised or a worker died. The message names the env id and task."""


class TrainingStopped(MetarlError):
    """Training stopped itself (e.g. too many failed meta-steps in a row); checkpoints are kept."""
