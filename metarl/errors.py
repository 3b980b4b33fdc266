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
