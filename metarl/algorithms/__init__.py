"""Meta-learners. Each is a small class composing the sampler, the inner loop and an optimizer."""

from metarl.algorithms.base import MetaLearner
from metarl.algorithms.fomaml import FOMAML
from metarl.algorithms.maml_trpo import MAMLTRPO
from metarl.algorithms.promp import ProMP
from metarl.algorithms.reptile import Reptile

ALGORITHMS = {"maml_trpo": MAMLTRPO, "fomaml": FOMAML, "reptile": Reptile, "promp": ProMP}

__all__ = ["ALGORITHMS", "FOMAML", "MAMLTRPO", "MetaLearner", "ProMP", "Reptile"]
