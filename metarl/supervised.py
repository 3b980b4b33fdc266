"""Supervised few-shot learning: the learners and the task families, in one namespace.

import metarl
learner = metarl.supervised.MAML("supervised/Sinusoid", meta_batch_size=25, inner_lr=0.01)
learner.learn(iterations=1000)
print(learner.evaluate(num_tasks=100, steps=10)["mean_mse"])
"""

from metarl.fewshot import (
    FEWSHOT_FAMILIES,
    FewShotBatch,
    FewShotFamily,
    NWayKShot,
    Regressor,
    SinusoidTask,
    SinusoidTasks,
    inner_loop,
    solve_proximal,
    task_losses,
)
from metarl.learners.supervised import (
    FOMAML,
    IMAML,
    MAML,
    AdaptedModel,
    Pretrained,
    Reptile,
    SupervisedLearner,
    imaml_task_gradient,
)

__all__ = [
    "FEWSHOT_FAMILIES",
    "FOMAML",
    "IMAML",
    "MAML",
    "AdaptedModel",
    "FewShotBatch",
    "FewShotFamily",
    "NWayKShot",
    "Pretrained",
    "Regressor",
    "Reptile",
    "SinusoidTask",
    "SinusoidTasks",
    "SupervisedLearner",
    "imaml_task_gradient",
    "inner_loop",
    "solve_proximal",
    "task_losses",
]
