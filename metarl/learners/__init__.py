"""Meta-learners. Each is a small class composing the sampler, the inner loop and an optimizer."""

from metarl.learners.base import MetaLearner
from metarl.learners.fomaml import FOMAML
from metarl.learners.maml_trpo import MAMLTRPO
from metarl.learners.promp import ProMP
from metarl.learners.reptile import Reptile

ALGORITHMS = {"maml_trpo": MAMLTRPO, "fomaml": FOMAML, "reptile": Reptile, "promp": ProMP}

__all__ = ["ALGORITHMS", "FOMAML", "MAMLTRPO", "MetaLearner", "ProMP", "Reptile"]
