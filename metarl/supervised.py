"""Supervised few-shot learning on the same adaptation core as RL (the suite is model-agnostic).

* :class:`SinusoidTasks`: regression to y = A sin(x − φ), A ~ U[0.1, 5], φ ~ U[0, π],
  x ~ U[−5, 5] (Finn et al. 2017, section 5.1), K-shot support and query sets.
* :class:`NWayKShot`: N-way K-shot classification episodes from any labelled tensor dataset.
* :class:`SupervisedMetaLearner`: MAML, FOMAML, Reptile and iMAML. Every inner step is
  :func:`metarl.adaptation.gradient_step`, the function RL's inner loop also steps through:
  functional parameters with a task dimension, k steps, first or second order.

The learners fit the :class:`~metarl.trainer.Trainer` like the RL ones (``train_iteration``
returns metrics, ``state_dict`` holds the optimizer), so ``metarl train experiments/sinusoid.yaml``
trains one. The env id ``supervised/Sinusoid`` selects this path.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metarl.adaptation import gradient_step
from metarl.config import Config
from metarl.errors import ConfigError
from metarl.optim.trpo import conjugate_gradient, flat
from metarl.policies import Params, mlp

SINUSOID = "supervised/Sinusoid"
SUPERVISED_ALGORITHMS = ("maml", "fomaml", "reptile", "imaml", "pretrained")


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


class SinusoidTasks:
    """The sinusoid regression family of the MAML paper."""

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
    integer ``labels`` [M]). Each task draws ``n_way`` classes, relabels them 0..n-1, and
    ``k_shot`` support and ``k_query`` query examples per class, without overlap."""

    def __init__(self, features: Tensor, labels: Tensor, n_way: int, k_shot: int, k_query: int) -> None:
        self.features, self.labels = features, labels.long()
        self.n_way, self.k_shot, self.k_query = n_way, k_shot, k_query
        classes, counts = torch.unique(self.labels, return_counts=True)
        enough = classes[counts >= k_shot + k_query]
        if len(enough) < n_way:
            raise ValueError(
                f"NWayKShot: {n_way}-way {k_shot}+{k_query}-shot needs {n_way} classes with "
                f"{k_shot + k_query} examples each; the dataset has {len(enough)}"
            )
        self.classes = enough
        self.index = {int(c): torch.nonzero(self.labels == c).flatten() for c in enough}

    def sample(self, num_tasks: int, rng: np.random.Generator) -> FewShotBatch:
        sx, sy, qx, qy = [], [], [], []
        for _ in range(num_tasks):
            chosen = rng.choice(len(self.classes), size=self.n_way, replace=False)
            s_idx, q_idx, s_lab, q_lab = [], [], [], []
            for new_label, c in enumerate(chosen):
                pool = self.index[int(self.classes[c])]
                picks = pool[
                    torch.as_tensor(
                        rng.choice(len(pool), self.k_shot + self.k_query, replace=False), device=pool.device
                    )
                ]
                s_idx.append(picks[: self.k_shot])
                q_idx.append(picks[self.k_shot :])
                s_lab += [new_label] * self.k_shot
                q_lab += [new_label] * self.k_query
            sx.append(self.features[torch.cat(s_idx)])
            qx.append(self.features[torch.cat(q_idx)])
            sy.append(torch.tensor(s_lab, device=self.labels.device))
            qy.append(torch.tensor(q_lab, device=self.labels.device))
        return FewShotBatch(torch.stack(sx), torch.stack(sy), torch.stack(qx), torch.stack(qy))


class Regressor(nn.Module):
    """The paper's regressor: an MLP with two hidden layers of 40 ReLU units by default."""

    def __init__(
        self, in_dim: int = 1, out_dim: int = 1, hidden_sizes=(40, 40), activation: str = "relu"
    ) -> None:
        super().__init__()
        self.net = mlp(in_dim, out_dim, hidden_sizes, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def params(self) -> Params:
        return dict(self.named_parameters())


def task_losses(model: nn.Module, params: Params, x: Tensor, y: Tensor, loss: str = "mse") -> Tensor:
    """Per-task losses [N] for per-task ``params`` (leading task dimension) on ``x`` [N, K, ...]."""

    def one(p: Params, xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, p, (xi,))
        if loss == "mse":
            return ((out - yi) ** 2).mean()
        return nn.functional.cross_entropy(out, yi)

    return vmap(one)(params, x, y)


def adapt_steps(
    model: nn.Module,
    params: Params,
    x: Tensor,
    y: Tensor,
    lr: float,
    steps: int,
    first_order: bool,
    loss: str = "mse",
    proximal: tuple[Params, float] | None = None,
    per_task: bool = False,
) -> Params:
    """``steps`` gradient steps per task from ``params`` on (x, y); returns per-task parameters.

    ``per_task`` says whether ``params`` already has a task dimension. ``proximal=(θ, λ)`` adds
    iMAML's λ/2 ‖φ − θ‖² to each task's loss.
    """
    current = params
    num_tasks = x.shape[0]
    for _ in range(steps):

        def losses(p: Params) -> Tensor:
            value = task_losses(model, p, x, y, loss)
            if proximal is not None:
                anchor, lam = proximal
                value = value + 0.5 * lam * sum(((p[k] - anchor[k]) ** 2).flatten(1).sum(1) for k in p)
            return value

        current = gradient_step(current, losses, num_tasks, lr, first_order, per_task)
        per_task = True
    return current


class SupervisedMetaLearner:
    """MAML / FOMAML / Reptile / iMAML for few-shot regression (sinusoid) with Adam outer steps
    (Reptile: θ ← θ + ε · mean_i(W_i − θ)); ``pretrained`` fits one regressor to all tasks
    jointly, the paper's baseline, fine-tuned at evaluation like the others."""

    def __init__(self, model: Regressor, config: Config) -> None:
        if config.algorithm not in SUPERVISED_ALGORITHMS:
            raise ConfigError(
                f"algorithm: {config.algorithm!r} is an RL learner; on {SINUSOID} use one of "
                f"{', '.join(SUPERVISED_ALGORITHMS)}"
            )
        self.model, self.config = model, config
        self.tasks = SinusoidTasks()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.outer.lr)
        self.last_failure = ""

    def state_dict(self) -> dict[str, Any]:
        return {"adam": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["adam"])

    def _batch(self, rng: np.random.Generator) -> FewShotBatch:
        s = self.config.supervised
        tasks = self.tasks.sample_tasks(self.config.meta_batch_size, rng)
        return self.tasks.batch(tasks, s.k_shot, s.k_query, rng).to(next(self.model.parameters()).device)

    def meta_gradient(self, batch: FewShotBatch) -> tuple[list[Tensor], float, float]:
        """(gradient of the mean query loss w.r.t. θ, pre-adaptation and post-adaptation query loss)."""
        c, model = self.config, self.model
        theta = model.params()
        names, params = list(theta), list(theta.values())
        n = batch.support_x.shape[0]
        pre = _query_loss(model, theta, batch)
        if c.algorithm == "imaml":
            lam = c.supervised.imaml_lambda
            anchor = {k: v.detach() for k, v in theta.items()}
            phi = adapt_steps(
                model,
                theta,
                batch.support_x,
                batch.support_y,
                c.inner.lr,
                c.inner.steps,
                True,
                proximal=(anchor, lam),
            )
            phi = {k: v.detach() for k, v in phi.items()}
            grads = [torch.zeros_like(p) for p in params]
            post = 0.0
            for i in range(n):
                g_i, loss_i = imaml_task_gradient(
                    model, {k: phi[k][i] for k in names}, batch, i, lam, c.supervised.cg_iters
                )
                post += loss_i / n
                for k, g in enumerate(g_i):
                    grads[k] += g / n
            return grads, pre, post
        first_order = c.algorithm == "fomaml"
        phi = adapt_steps(
            model, theta, batch.support_x, batch.support_y, c.inner.lr, c.inner.steps, first_order
        )
        query = task_losses(model, phi, batch.query_x, batch.query_y).mean()
        grads = list(torch.autograd.grad(query, params))
        return grads, pre, float(query.detach())

    def train_iteration(self, rng: np.random.Generator, generator: torch.Generator) -> dict[str, float]:
        c, model = self.config, self.model
        batch = self._batch(rng)
        if c.algorithm == "pretrained":  # the paper's baseline: one regressor fit to all tasks jointly
            x = torch.cat([batch.support_x, batch.query_x], 1)
            y = torch.cat([batch.support_y, batch.query_y], 1)
            n = x.shape[0]
            theta = model.params()
            shared = {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in theta.items()}
            loss = task_losses(model, shared, x, y).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            value = float(loss.detach())
            return {"loss/pre_adaptation": value, "loss/post_adaptation": value, "meta/accepted": 1.0}
        if c.algorithm == "reptile":
            theta = {k: v.detach() for k, v in model.params().items()}
            pre = _query_loss(model, theta, batch)
            x = torch.cat([batch.support_x, batch.query_x], 1)
            y = torch.cat([batch.support_y, batch.query_y], 1)
            w = adapt_steps(model, theta, x, y, c.inner.lr, c.inner.steps, True)
            post = float(task_losses(model, w, batch.query_x, batch.query_y).mean().detach())
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.add_(c.reptile.epsilon * (w[name].detach().mean(0) - p))
            return {"loss/pre_adaptation": pre, "loss/post_adaptation": post, "meta/accepted": 1.0}
        grads, pre, post = self.meta_gradient(batch)
        accepted = all(torch.isfinite(g).all() for g in grads)
        if accepted:
            self.optimizer.zero_grad()
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.detach()
            self.optimizer.step()
        else:
            self.last_failure = "non-finite meta-gradient"
        return {"loss/pre_adaptation": pre, "loss/post_adaptation": post, "meta/accepted": float(accepted)}


def imaml_task_gradient(
    model: nn.Module, phi: Params, batch: FewShotBatch, i: int, lam: float, cg_iters: int
) -> tuple[list[Tensor], float]:
    """iMAML's implicit meta-gradient of task ``i`` (Rajeswaran et al. 2019): solve
    (I + H/λ) g = ∇_φ L_query(φ) by conjugate gradient, H the support loss's Hessian at φ."""
    names = list(phi)
    phi = {k: v.detach().requires_grad_() for k, v in phi.items()}
    params = [phi[k] for k in names]
    query = _single_loss(model, phi, batch.query_x[i], batch.query_y[i])
    rhs = flat(torch.autograd.grad(query, params))
    support = _single_loss(model, phi, batch.support_x[i], batch.support_y[i])
    grad_support = flat(torch.autograd.grad(support, params, create_graph=True))

    def matvec(v: Tensor) -> Tensor:
        hv = flat(torch.autograd.grad(grad_support @ v, params, retain_graph=True))
        return v + hv / lam

    g = conjugate_gradient(matvec, rhs, iters=cg_iters)
    out, offset = [], 0
    for p in params:
        out.append(g[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    return out, float(query.detach())


def _query_loss(model: nn.Module, theta: Params, batch: FewShotBatch) -> float:
    """Mean query loss of the unadapted θ over the batch's tasks."""
    n = batch.query_x.shape[0]
    with torch.no_grad():
        shared = {k: v.detach().unsqueeze(0).expand(n, *v.shape) for k, v in theta.items()}
        return float(task_losses(model, shared, batch.query_x, batch.query_y).mean())


def _single_loss(model: nn.Module, params: Params, x: Tensor, y: Tensor) -> Tensor:
    return ((functional_call(model, params, (x,)) - y) ** 2).mean()


def evaluate_regression(
    model: Regressor,
    config: Config,
    num_tasks: int,
    steps: int,
    seed: int,
    k_shot: int | None = None,
    lr: float | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Query MSE on held-out tasks after 0..``steps`` SGD steps on K-shot support sets, on
    ``device`` (default ``auto``: the GPU when there is one)."""
    from metarl.device import resolve_device

    target = resolve_device("auto" if device is None else str(device))
    if next(model.parameters()).device != target:
        model = copy.deepcopy(model).to(target)
    rng = np.random.default_rng([seed, 1])
    family = SinusoidTasks()
    k = k_shot or config.supervised.k_shot
    lr = config.inner.lr if lr is None else lr
    tasks = family.sample_tasks(num_tasks, rng)
    theta = {n: v.detach() for n, v in model.params().items()}
    batch = family.batch(tasks, k, 100, rng).to(next(iter(theta.values())).device)
    per_step = []
    current: Params = {n: v.unsqueeze(0).expand(num_tasks, *v.shape) for n, v in theta.items()}
    for step in range(steps + 1):
        per_step.append(task_losses(model, current, batch.query_x, batch.query_y).detach().cpu().numpy())
        if step < steps:
            current = adapt_steps(
                model, current, batch.support_x, batch.support_y, lr, 1, True, per_task=True
            )
            current = {n: v.detach() for n, v in current.items()}
    mse = np.stack(per_step)  # [steps + 1, tasks]
    return {
        "env_id": SINUSOID,
        "method": config.algorithm,
        "num_tasks": num_tasks,
        "k_shot": k,
        "steps": list(range(steps + 1)),
        "mean_mse": mse.mean(1).tolist(),
        "stderr": (mse.std(1, ddof=1) / math.sqrt(num_tasks)).tolist(),
        "lr": lr,
        "seed": seed,
    }
