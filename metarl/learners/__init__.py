"""Meta-learners: one class per algorithm, each composing the sampler, the inner loop and an
outer optimizer, and all listed in one registry (:mod:`metarl.learners.registry`)."""

from metarl.learners.base import Learner, load
from metarl.learners.fomaml import FOMAML
from metarl.learners.maml_trpo import MAMLTRPO
from metarl.learners.promp import ProMP
from metarl.learners.registry import learner_class, learners, register
from metarl.learners.reptile import Reptile
from metarl.learners.rl import InnerBatch, RLLearner

__all__ = [
    "FOMAML",
    "InnerBatch",
    "Learner",
    "MAMLTRPO",
    "ProMP",
    "RLLearner",
    "Reptile",
    "learner_class",
    "learners",
    "load",
    "register",
]
