"""Meta-learners. Each is a small class composing the sampler, the inner loop and an optimizer."""

from metarl.algorithms.maml_trpo import MAMLTRPO

ALGORITHMS = {"maml_trpo": MAMLTRPO}

__all__ = ["ALGORITHMS", "MAMLTRPO"]
