"""Few-shot supervised task families, the model, and the inner loop on functional parameters.

A family draws tasks and K-shot batches of them: ``sample_tasks(n, rng)``, ``batch(tasks,
k_support, k_query, rng)`` -> :class:`FewShotBatch`, with ``in_dim``, ``out_dim`` and ``loss``
(``mse`` or ``cross_entropy``). Any object with these plugs into the supervised learners
(``metarl.supervised.MAML(tasks=my_family)``); registered ones are named by id
(:data:`FEWSHOT_FAMILIES`).

* :class:`SinusoidTasks`: regression to y = A sin(x − φ), A ~ U[0.1, 5], φ ~ U[0, π],
  x ~ U[−5, 5] (Finn et al. 2017, section 5.1).
* :class:`NWayKShot`: N-way K-shot classification episodes from any labelled tensor dataset.

Every inner step is :func:`metarl.adaptation.gradient_step`, the function RL's inner loop also
steps through: functional parameters with a task dimension, k steps, first or second order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metarl.adaptation import gradient_step
from metarl.policies import Params, mlp

LOSSES = ("mse", "cross_entropy")


@dataclass(frozen=True)
class SinusoidTask:
    """y = amplitude · sin(x − phase)."""

    amplitude: float
    phase: float


@dataclass
class FewShotBatch:
    """Support and query sets of N tasks: ``x`` [N, K, in], ``y`` [N, K, out] (or [N, K] labels)."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    def to(self, device: torch.device | str) -> FewShotBatch:
        """The same batch on ``device``."""
        return FewShotBatch(
            *(x.to(device) for x in (self.support_x, self.support_y, self.query_x, self.query_y))
        )


class FewShotFamily(Protocol):
    """What a supervised learner needs of a task family."""

    in_dim: int
    out_dim: int
    loss: str  # mse or cross_entropy
    eval_k_query: int  # query examples per task when a learner is evaluated

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]: ...

    def batch(
        self, tasks: list[Any], k_support: int, k_query: int, rng: np.random.Generator
    ) -> FewShotBatch: ...


class SinusoidTasks:
    """The sinusoid regression family of the MAML paper."""

    in_dim, out_dim, loss, eval_k_query = 1, 1, "mse", 100

    def __init__(self, amplitude=(0.1, 5.0), phase=(0.0, math.pi), x_range=(-5.0, 5.0)) -> None:
        self.amplitude, self.phase, self.x_range = amplitude, phase, x_range

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[SinusoidTask]:
        amps = rng.uniform(*self.amplitude, size=n)
        phases = rng.uniform(*self.phase, size=n)
        return [SinusoidTask(float(a), float(p)) for a, p in zip(amps, phases, strict=True)]

    def batch(
        self, tasks: list[SinusoidTask], k_support: int, k_query: int, rng: np.random.Generator
    ) -> FewShotBatch:
        """K-shot support and query points drawn independently for every task."""
        x = rng.uniform(*self.x_range, size=(len(tasks), k_support + k_query, 1))
        amp = np.array([t.amplitude for t in tasks])[:, None, None]
        phase = np.array([t.phase for t in tasks])[:, None, None]
        y = amp * np.sin(x - phase)
        x = torch.as_tensor(x, dtype=torch.float32, device="cpu")
        y = torch.as_tensor(y, dtype=torch.float32, device="cpu")
        return FewShotBatch(x[:, :k_support], y[:, :k_support], x[:, k_support:], y[:, k_support:])


class NWayKShot:
    """N-way K-shot classification episodes from a labelled dataset (``features`` [M, ...],
    integer ``labels`` [M]). Each task is ``n_way`` classes, relabelled 0..n-1; its batch draws
    ``k_shot`` support and ``k_query`` query examples per class, without overlap."""

    loss = "cross_entropy"

    def __init__(self, features: Tensor, labels: Tensor, n_way: int, k_shot: int, k_query: int) -> None:
        self.features, self.labels = features, labels.long()
        self.n_way, self.k_shot, self.k_query = n_way, k_shot, k_query
        self.in_dim, self.out_dim, self.eval_k_query = int(features[0].numel()), n_way, k_query
        classes, counts = torch.unique(self.labels, return_counts=True)
        enough = classes[counts >= k_shot + k_query]
        if len(enough) < n_way:
            raise ValueError(
                f"NWayKShot: {n_way}-way {k_shot}+{k_query}-shot needs {n_way} classes with "
                f"{k_shot + k_query} examples each; the dataset has {len(enough)}"
            )
        self.classes = enough
        self.index = {int(c): torch.nonzero(self.labels == c).flatten() for c in enough}

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
        """``n`` tasks, each a tuple of ``n_way`` distinct class positions."""
        return [
            tuple(int(c) for c in rng.choice(len(self.classes), size=self.n_way, replace=False))
            for _ in range(n)
        ]

    def batch(
        self, tasks: list[tuple[int, ...]], k_support: int, k_query: int, rng: np.random.Generator
    ) -> FewShotBatch:
        sx, sy, qx, qy = [], [], [], []
        for chosen in tasks:
            s_idx, q_idx, s_lab, q_lab = [], [], [], []
            for new_label, c in enumerate(chosen):
                pool = self.index[int(self.classes[c])]
                picks = pool[
                    torch.as_tensor(
                        rng.choice(len(pool), k_support + k_query, replace=False), device=pool.device
                    )
                ]
                s_idx.append(picks[:k_support])
                q_idx.append(picks[k_support:])
                s_lab += [new_label] * k_support
                q_lab += [new_label] * k_query
            sx.append(self.features[torch.cat(s_idx)].flatten(1))
            qx.append(self.features[torch.cat(q_idx)].flatten(1))
            sy.append(torch.tensor(s_lab, device=self.labels.device))
            qy.append(torch.tensor(q_lab, device=self.labels.device))
        return FewShotBatch(torch.stack(sx), torch.stack(sy), torch.stack(qx), torch.stack(qy))

    def sample(self, num_tasks: int, rng: np.random.Generator) -> FewShotBatch:
        """``num_tasks`` episodes with the family's own ``k_shot`` and ``k_query``."""
        return self.batch(self.sample_tasks(num_tasks, rng), self.k_shot, self.k_query, rng)


#: Registered few-shot families: id -> factory.
FEWSHOT_FAMILIES: dict[str, Any] = {"supervised/Sinusoid": SinusoidTasks}


class Regressor(nn.Module):
    """The paper's model: an MLP, two hidden layers of 40 ReLU units by default."""

    def __init__(
        self, in_dim: int = 1, out_dim: int = 1, hidden_sizes=(40, 40), activation: str = "relu"
    ) -> None:
        super().__init__()
        self.net = mlp(in_dim, out_dim, hidden_sizes, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def params(self) -> Params:
        return dict(self.named_parameters())


def single_loss(model: nn.Module, params: Params, x: Tensor, y: Tensor, loss: str = "mse") -> Tensor:
    """One task's loss under ``params`` (no task dimension)."""
    out = functional_call(model, params, (x,))
    if loss == "mse":
        return ((out - y) ** 2).mean()
    return nn.functional.cross_entropy(out, y)


def task_losses(model: nn.Module, params: Params, x: Tensor, y: Tensor, loss: str = "mse") -> Tensor:
    """Per-task losses [N] for per-task ``params`` (leading task dimension) on ``x`` [N, K, ...]."""
    return vmap(lambda p, xi, yi: single_loss(model, p, xi, yi, loss))(params, x, y)


def inner_loop(
    model: nn.Module,
    params: Params,
    x: Tensor,
    y: Tensor,
    lr: float,
    steps: int,
    first_order: bool,
    loss: str = "mse",
    per_task: bool = False,
) -> Params:
    """``steps`` gradient steps per task from ``params`` on (x, y); returns per-task parameters.

    ``per_task`` says whether ``params`` already has a task dimension.
    """
    current = params
    num_tasks = x.shape[0]
    for _ in range(steps):

        def losses(p: Params) -> Tensor:
            return task_losses(model, p, x, y, loss)

        current = gradient_step(current, losses, num_tasks, lr, first_order, per_task)
        per_task = True
    return current


def solve_proximal(
    model: nn.Module,
    anchor: Params,
    x: Tensor,
    y: Tensor,
    lr: float,
    steps: int,
    lam: float,
    loss: str = "mse",
    on_step: Callable[[Params], None] | None = None,
) -> tuple[Params, Tensor]:
    """iMAML's inner problem, min_φ L(φ; x, y) + λ/2 ‖φ − θ‖² per task, by ``steps`` gradient
    steps from φ = θ (``anchor``). A step that would raise a task's objective is refused and that
    task's step size halves, so a task whose curvature has outgrown ``lr`` still converges
    instead of oscillating. Returns the per-task φ (detached) and each task's final step size;
    ``on_step`` (if given) sees the per-task φ after every step, for scoring each step."""
    num_tasks = x.shape[0]

    def objective(p: Params) -> tuple[Tensor, Params]:
        p = {k: v.detach().requires_grad_() for k, v in p.items()}
        value = task_losses(model, p, x, y, loss)
        value = value + 0.5 * lam * sum(((p[k] - anchor[k]) ** 2).flatten(1).sum(1) for k in p)
        grads = torch.autograd.grad(value.sum(), list(p.values()))
        return value.detach(), dict(zip(p, grads, strict=True))

    phi = {k: v.detach().unsqueeze(0).expand(num_tasks, *v.shape).clone() for k, v in anchor.items()}
    rate = torch.full((num_tasks,), float(lr), dtype=next(iter(anchor.values())).dtype, device=x.device)

    def per_task(t: Tensor, like: Tensor) -> Tensor:  # [N] broadcast against [N, ...]
        return t.view(-1, *([1] * (like.dim() - 1)))

    value, grad = objective(phi)
    for _ in range(steps):
        trial = {k: phi[k] - per_task(rate, phi[k]) * grad[k] for k in phi}
        trial_value, trial_grad = objective(trial)
        # Rounding lets a converged task's objective tick up; that is not a step too long.
        slack = 8 * torch.finfo(value.dtype).eps * (1 + value.abs())
        better = torch.isfinite(trial_value) & (trial_value <= value + slack)
        phi = {k: torch.where(per_task(better, phi[k]), trial[k], phi[k]) for k in phi}
        grad = {k: torch.where(per_task(better, grad[k]), trial_grad[k], grad[k]) for k in grad}
        value = torch.where(better, trial_value, value)
        rate = torch.where(better, rate, rate / 2)
        if on_step is not None:
            on_step(phi)
    return phi, rate


def shared(params: Params, num_tasks: int) -> Params:
    """One parameter set repeated (as a view) over ``num_tasks`` tasks."""
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}
