"""Supervised few-shot learners on the RL learners' core: MAML, FOMAML, Reptile, iMAML and the
paper's pretrained baseline.

Their inner steps are :func:`metarl.adaptation.gradient_step` (through
:func:`metarl.fewshot.inner_loop`), their outer steps the shared
:mod:`metarl.optim.first_order` ones (Adam on a meta-gradient, Reptile's interpolation), and
they train, save, load and evaluate through :class:`~metarl.learners.base.Learner` like the RL
ones::

    learner = metarl.supervised.MAML("supervised/Sinusoid", meta_batch_size=25, seed=0)
    learner.learn(iterations=1000)
    learner.evaluate(num_tasks=100, steps=10)     # query MSE after 0..10 steps

A family object (:class:`metarl.fewshot.NWayKShot`, or any
:class:`~metarl.fewshot.FewShotFamily`) works in place of an id:
``metarl.supervised.MAML(NWayKShot(features, labels, 5, 1, 15))`` trains a 5-way 1-shot
classifier with the cross-entropy loss.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from metarl.config import SUPERVISED_KEYS
from metarl.device import resolve_device
from metarl.errors import ConfigError, MetarlError
from metarl.fewshot import (
    FEWSHOT_FAMILIES,
    FewShotBatch,
    FewShotFamily,
    Regressor,
    inner_loop,
    shared,
    single_loss,
    solve_proximal,
    task_losses,
)
from metarl.learners.base import ADAPT_STREAM, EVAL_STREAM, VALID_STREAM, Learner, document
from metarl.learners.registry import register
from metarl.optim.first_order import apply_gradients, reptile_step
from metarl.optim.trpo import conjugate_gradient, flat
from metarl.policies import Params

#: How a few-shot learner adapts θ to a task (see :attr:`SupervisedLearner.adaptation`).
ADAPTATIONS = ("sgd", "proximal")


def family_id(family: Any) -> str:
    """The config's ``env`` for a family: its registered id, or ``supervised/<ClassName>``."""
    if isinstance(family, str):
        return family
    for name, factory in FEWSHOT_FAMILIES.items():
        if type(family) is factory:
            return name
    return f"supervised/{type(family).__name__}"


class AdaptedModel:
    """A model with parameters adapted to one task: ``predict(x)`` maps inputs to outputs."""

    def __init__(self, model: nn.Module, params: Params, task: Any = None) -> None:
        self.model, self.params, self.task = model, {k: v.detach() for k, v in params.items()}, task

    @torch.no_grad()
    def predict(self, x: np.ndarray | Tensor) -> np.ndarray:
        """Outputs for inputs ``x`` [B, in_dim] (or one input [in_dim])."""
        device = next(iter(self.params.values())).device
        t = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
        out = torch.func.functional_call(self.model, self.params, (t,))
        return out.cpu().numpy()


class SupervisedLearner(Learner):
    """Base of the few-shot learners: the family, the model, Adam, evaluation and adaptation."""

    kind = "supervised"
    kind_keys = SUPERVISED_KEYS
    uses_adam = True
    #: How ``adapt``, ``evaluate`` and validation fit θ to a task: ``sgd``, plain gradient steps of
    #: ``inner.lr`` on the support loss (MAML's inner loop), or ``proximal``, iMAML's inner
    #: problem min_φ L_support(φ) + λ/2 ‖φ − θ‖² by steps that back off where they would raise it
    #: (:func:`~metarl.fewshot.solve_proximal`, λ = ``supervised.imaml_lambda``). Each learner
    #: adapts as it trains; ``evaluate(adaptation=...)`` scores any θ either way.
    adaptation = "sgd"

    def __init__(self, tasks: str | FewShotFamily = "supervised/Sinusoid", **kwargs: Any) -> None:
        self._family = None if isinstance(tasks, str) else tasks
        config = self.config_from_kwargs(family_id(tasks), kwargs)
        self._setup(config)
        self._build(policy=None, eager=True)

    @property
    def family(self) -> FewShotFamily:
        """The task family (made from its id on first use)."""
        if self._family is None:
            factory = FEWSHOT_FAMILIES.get(self.config.env)
            if factory is None:
                raise MetarlError(
                    f"{self.config.env!r} is not a registered few-shot family "
                    f"({', '.join(FEWSHOT_FAMILIES)}); "
                    "pass the family object: metarl.load(path, tasks=family)"
                )
            self._family = factory()
        return self._family

    def _build(self, policy: torch.nn.Module | None, eager: bool) -> None:
        if not hasattr(self, "_family"):
            self._family = None
        family = self.family
        if family.loss not in ("mse", "cross_entropy"):
            raise ConfigError(f"{family_id(family)}: loss must be mse or cross_entropy, got {family.loss!r}")
        p = self.config.policy
        if policy is None:
            policy = self._init_parameters(
                lambda: Regressor(family.in_dim, family.out_dim, p.hidden_sizes, p.activation)
            )
        self.policy = policy.to(self.device)
        self.optimizer = (
            torch.optim.Adam(self.policy.parameters(), lr=self.config.outer.lr) if self.uses_adam else None
        )

    def _restore(self, shapes: dict[str, Tensor], file: Path, tasks: Any) -> None:
        self._family = tasks
        family = self.family
        p = self.config.policy
        self._build(Regressor(family.in_dim, family.out_dim, p.hidden_sizes, p.activation), eager=False)

    @property
    def loss(self) -> str:
        return self.family.loss

    @property
    def best_by(self) -> str:
        """``validation/proximal`` where validation adapts by iMAML's proximal steps: a resumed
        run whose best was scored after plain SGD steps starts its best afresh."""
        by = super().best_by
        return f"{by}/proximal" if by == "validation" and self.adaptation == "proximal" else by

    def _adaptation(self, adaptation: str | None) -> str:
        if adaptation is None:
            return self.adaptation
        if adaptation not in ADAPTATIONS:
            raise MetarlError(f"adaptation must be one of {', '.join(ADAPTATIONS)}, got {adaptation!r}")
        return adaptation

    def optimizer_state(self) -> dict[str, Any]:
        return {"adam": self.optimizer.state_dict()} if self.optimizer is not None else {}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        if self.optimizer is not None and "adam" in state:
            self.optimizer.load_state_dict(state["adam"])

    # --- one meta-iteration ------------------------------------------------------------------
    def sample_batch(self, rng: np.random.Generator) -> FewShotBatch:
        c = self.config
        tasks = self.family.sample_tasks(c.meta_batch_size, rng)
        return self.family.batch(tasks, c.supervised.k_shot, c.supervised.k_query, rng).to(self.device)

    def train_iteration(self, rng: np.random.Generator, generator: torch.Generator) -> dict[str, float]:
        batch = self.sample_batch(rng)
        pre = self.query_loss(self.policy.params(), batch)
        metrics = self.meta_step(batch)
        return {"loss/pre_adaptation": pre, **metrics}

    def meta_step(self, batch: FewShotBatch) -> dict[str, float]:
        """Update θ on one batch of tasks; returns ``loss/post_adaptation`` and ``meta/accepted``."""
        raise NotImplementedError

    def query_loss(self, theta: Params, batch: FewShotBatch) -> float:
        """Mean query loss of the unadapted θ over the batch's tasks."""
        n = batch.query_x.shape[0]
        with torch.no_grad():
            theta = {k: v.detach() for k, v in theta.items()}
            return float(
                task_losses(self.policy, shared(theta, n), batch.query_x, batch.query_y, self.loss).mean()
            )

    def inner_loop(
        self, params: Params, x: Tensor, y: Tensor, steps: int, first_order: bool, **kwargs: Any
    ) -> Params:
        """``steps`` inner steps of size ``inner.lr`` per task (see :func:`metarl.fewshot.inner_loop`)."""
        return inner_loop(
            self.policy, params, x, y, self.config.inner.lr, steps, first_order, self.loss, **kwargs
        )

    def second_order_step(self, batch: FewShotBatch, first_order: bool) -> dict[str, float]:
        """MAML's step: Adam on the gradient of the query loss after the inner loop."""
        theta = self.policy.params()
        phi = self.inner_loop(theta, batch.support_x, batch.support_y, self.config.inner.steps, first_order)
        query = task_losses(self.policy, phi, batch.query_x, batch.query_y, self.loss).mean()
        grads = torch.autograd.grad(query, list(theta.values()))
        return self._apply(list(theta.values()), list(grads), float(query.detach()))

    def _apply(self, params: list[Tensor], grads: list[Tensor], post: float) -> dict[str, float]:
        accepted = apply_gradients(self.optimizer, params, grads)
        if not accepted:
            self.last_failure = "non-finite meta-gradient"
        return {"loss/post_adaptation": post, "meta/accepted": float(accepted)}

    # --- using a trained learner -------------------------------------------------------------
    def evaluate(
        self,
        num_tasks: int = 40,
        steps: int = 3,
        seed: int = 0,
        k_shot: int | None = None,
        lr: float | None = None,
        device: str | torch.device | None = None,
        adaptation: str | None = None,
    ) -> dict[str, Any]:
        """Query loss on held-out tasks after 0..``steps`` adaptation steps of size ``lr`` on
        K-shot support sets (the MSE for regression), on ``device`` (default ``auto``). The steps
        are the learner's own :attr:`adaptation` unless ``adaptation`` (``sgd`` or ``proximal``)
        says otherwise: ``sgd`` scores every learner by the same plain steps."""
        if num_tasks < 1 or steps < 0:
            raise MetarlError(f"need --tasks >= 1 and --steps >= 0, got {num_tasks} and {steps}")
        adaptation = self._adaptation(adaptation)
        target = resolve_device("auto" if device is None else str(device))
        model = (
            self.policy
            if next(self.policy.parameters()).device == target
            else copy.deepcopy(self.policy).to(target)
        )
        rng = np.random.default_rng([seed, EVAL_STREAM])
        k = k_shot or self.config.supervised.k_shot
        lr = self.config.inner.lr if lr is None else lr
        tasks = self.family.sample_tasks(num_tasks, rng)
        batch = self.family.batch(tasks, k, self.family.eval_k_query, rng).to(target)
        values = self._losses_after_steps(model, batch, steps, lr, adaptation)
        name = "mean_mse" if self.loss == "mse" else "mean_loss"
        proximal = {"imaml_lambda": self.config.supervised.imaml_lambda} if adaptation == "proximal" else {}
        return {
            "env_id": self.config.env,
            "method": self.method,
            "num_tasks": num_tasks,
            "k_shot": k,
            "steps": list(range(steps + 1)),
            name: values.mean(1).tolist(),
            "stderr": (values.std(1, ddof=1) / math.sqrt(num_tasks)).tolist()
            if num_tasks > 1
            else [0.0] * (steps + 1),
            "lr": lr,
            "adaptation": adaptation,
            **proximal,
            "seed": seed,
        }

    def _losses_after_steps(
        self, model: nn.Module, batch: FewShotBatch, steps: int, lr: float, adaptation: str = "sgd"
    ) -> np.ndarray:
        """Each task's query loss [steps + 1, tasks] after 0..``steps`` steps of size ``lr`` on
        its support set, plain SGD or proximal (see :attr:`adaptation`); θ itself is unchanged."""
        theta = {n: v.detach() for n, v in model.params().items()}
        current = shared(theta, batch.support_x.shape[0])
        per_step = []
        if adaptation == "proximal":

            def score(phi: Params) -> None:
                losses = task_losses(model, phi, batch.query_x, batch.query_y, self.loss)
                per_step.append(losses.detach().cpu().numpy())

            score(current)
            lam = self.config.supervised.imaml_lambda
            solve_proximal(
                model, theta, batch.support_x, batch.support_y, lr, steps, lam, self.loss, on_step=score
            )
            return np.stack(per_step)
        for step in range(steps + 1):
            losses = task_losses(model, current, batch.query_x, batch.query_y, self.loss)
            per_step.append(losses.detach().cpu().numpy())
            if step < steps:
                current = inner_loop(
                    model, current, batch.support_x, batch.support_y, lr, 1, True, self.loss, per_task=True
                )
                current = {n: v.detach() for n, v in current.items()}
        return np.stack(per_step)

    def validation_tasks(self) -> list[Any]:
        """The fixed validation tasks (see :meth:`Learner.validation_tasks`)."""
        rng = np.random.default_rng([self.config.seed, VALID_STREAM])
        return self.family.sample_tasks(self.config.validation.tasks, rng)

    def validate(self) -> dict[str, float]:
        """−(query loss) on the validation tasks after ``inner.steps`` steps of ``inner.lr`` (the
        learner's own :attr:`adaptation`) on fresh K-shot support sets, as ``evaluate`` scores
        (see :meth:`Learner.validate`); the support and query sets are the same at every
        validation."""
        c = self.config
        rng, _ = self._validation_rng()
        batch = self.family.batch(self.validation_tasks(), c.supervised.k_shot, self.family.eval_k_query, rng)
        losses = self._losses_after_steps(
            self.policy, batch.to(self.device), c.inner.steps, c.inner.lr, self.adaptation
        )
        means = losses.mean(axis=1)  # [steps + 1]
        metrics = {f"validation/loss_after_{k}_steps": float(m) for k, m in enumerate(means)}
        metrics["validation/score"] = -float(means[-1])
        return metrics

    def adapt(
        self,
        task: Any,
        steps: int = 1,
        k_shot: int | None = None,
        lr: float | None = None,
        seed: int | None = None,
        adaptation: str | None = None,
    ) -> AdaptedModel:
        """Fit θ to ``task`` with ``steps`` steps (the learner's own :attr:`adaptation` unless
        ``adaptation`` says ``sgd`` or ``proximal``) on a fresh K-shot support set; θ itself is
        unchanged."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise MetarlError(f"adaptation steps must be an integer >= 0, got {steps!r}")
        adaptation = self._adaptation(adaptation)
        seed = self.config.seed if seed is None else seed
        rng = np.random.default_rng([seed, ADAPT_STREAM])
        k = k_shot or self.config.supervised.k_shot
        batch = self.family.batch([task], k, 1, rng).to(self.device)
        theta = {n: v.detach() for n, v in self.policy.params().items()}
        params = shared(theta, 1)
        lr = self.config.inner.lr if lr is None else lr
        if steps and adaptation == "proximal":
            lam = self.config.supervised.imaml_lambda
            params, _ = solve_proximal(
                self.policy, theta, batch.support_x, batch.support_y, lr, steps, lam, self.loss
            )
        elif steps:
            params = inner_loop(
                self.policy,
                params,
                batch.support_x,
                batch.support_y,
                lr,
                steps,
                True,
                self.loss,
                per_task=True,
            )
        return AdaptedModel(self.policy, {n: v[0] for n, v in params.items()}, task)


@register
@document
class MAML(SupervisedLearner):
    """MAML for few-shot supervised learning (Finn et al. 2017, section 5.1): Adam on the query
    loss after ``inner_steps`` inner steps, second order unless ``first_order``."""

    algorithm = "maml"
    hyperparameters = ("inner.steps", "inner.first_order", "outer.lr")

    def meta_step(self, batch: FewShotBatch) -> dict[str, float]:
        return self.second_order_step(batch, self.config.inner.first_order)


@register
@document
class FOMAML(SupervisedLearner):
    """First-order MAML for few-shot supervised learning."""

    algorithm = "fomaml"
    hyperparameters = ("inner.steps", "outer.lr")

    def meta_step(self, batch: FewShotBatch) -> dict[str, float]:
        return self.second_order_step(batch, first_order=True)


@register
@document
class Reptile(SupervisedLearner):
    """Reptile for few-shot supervised learning: ``inner_steps`` SGD steps on each task's support
    and query examples, then θ ← θ + ε · mean_i(W_i − θ)."""

    algorithm = "reptile"
    hyperparameters = ("inner.steps", "reptile.epsilon")
    uses_adam = False

    def meta_step(self, batch: FewShotBatch) -> dict[str, float]:
        theta = {k: v.detach() for k, v in self.policy.params().items()}
        x = torch.cat([batch.support_x, batch.query_x], 1)
        y = torch.cat([batch.support_y, batch.query_y], 1)
        w = self.inner_loop(theta, x, y, self.config.inner.steps, True)
        post = float(task_losses(self.policy, w, batch.query_x, batch.query_y, self.loss).mean().detach())
        accepted, norm = reptile_step(self.policy, w, self.config.reptile.epsilon)
        if not accepted:
            self.last_failure = "non-finite adapted parameters"
        return {"loss/post_adaptation": post, "meta/accepted": float(accepted), "meta/step_norm": norm}


@register
@document
class IMAML(SupervisedLearner):
    """iMAML (Rajeswaran et al. 2019): the inner loop solves the proximal problem
    min_φ L_support(φ) + λ/2 ‖φ − θ‖² approximately (``inner_steps`` steps, each task's step
    size halving where a step would raise its objective; see :func:`solve_proximal`); the implicit
    meta-gradient solves (I + H/λ) g = ∇L_query(φ) by conjugate gradient. The logged
    ``imaml/inner_residual`` (the proximal objective's gradient norm at φ, beside
    ``imaml/inner_residual_start``, the same at θ) says how well the inner problem was solved:
    the implicit gradient is exact only where it is near 0. It adapts at test time (``adapt``,
    ``evaluate``, validation) by the same proximal steps it trains with."""

    algorithm = "imaml"
    adaptation = "proximal"
    hyperparameters = ("inner.steps", "outer.lr", "supervised.imaml_lambda", "supervised.cg_iters")

    def meta_step(self, batch: FewShotBatch) -> dict[str, float]:
        c = self.config
        lam = c.supervised.imaml_lambda
        theta = self.policy.params()
        params = list(theta.values())
        anchor = {k: v.detach() for k, v in theta.items()}
        phi, rate = solve_proximal(
            self.policy, anchor, batch.support_x, batch.support_y, c.inner.lr, c.inner.steps, lam, self.loss
        )
        n = batch.support_x.shape[0]
        grads = [torch.zeros_like(p) for p in params]
        post, residual, start = 0.0, 0.0, 0.0
        for i in range(n):
            phi_i = {k: phi[k][i] for k in theta}
            g_i, loss_i = imaml_task_gradient(
                self.policy, phi_i, batch, i, lam, c.supervised.cg_iters, self.loss
            )
            residual += proximal_residual(self.policy, phi_i, anchor, batch, i, lam, self.loss) / n
            start += proximal_residual(self.policy, anchor, anchor, batch, i, lam, self.loss) / n
            post += loss_i / n
            for k, g in enumerate(g_i):
                grads[k] += g / n
        metrics = self._apply(params, grads, post)
        metrics["imaml/inner_residual"] = residual
        # The same norm at φ = θ, where the inner loop starts: the ratio says how much of the
        # proximal problem the inner steps solved.
        metrics["imaml/inner_residual_start"] = start
        # Below inner.lr where a task's curvature made a full step raise its objective.
        metrics["imaml/inner_lr_min"] = float(rate.min())
        return metrics


@register
@document
class Pretrained(SupervisedLearner):
    """The paper's pretrained baseline: one model fit to all tasks jointly (Adam), fine-tuned at
    evaluation like the meta-learned ones."""

    algorithm = "pretrained"
    hyperparameters = ("outer.lr",)

    def meta_step(self, batch: FewShotBatch) -> dict[str, float]:
        x = torch.cat([batch.support_x, batch.query_x], 1)
        y = torch.cat([batch.support_y, batch.query_y], 1)
        theta = self.policy.params()

        def loss() -> Tensor:
            return task_losses(self.policy, shared(theta, x.shape[0]), x, y, self.loss).mean()

        from metarl.optim.first_order import minimize

        accepted, value = minimize(self.optimizer, loss, 1)
        if not accepted:
            self.last_failure = "non-finite gradient"
        return {"loss/post_adaptation": float(value), "meta/accepted": float(accepted)}

    def train_iteration(self, rng: np.random.Generator, generator: torch.Generator) -> dict[str, float]:
        metrics = self.meta_step(self.sample_batch(rng))
        return {"loss/pre_adaptation": metrics["loss/post_adaptation"], **metrics}


def imaml_task_gradient(
    model: nn.Module, phi: Params, batch: FewShotBatch, i: int, lam: float, cg_iters: int, loss: str = "mse"
) -> tuple[list[Tensor], float]:
    """iMAML's implicit meta-gradient of task ``i`` (Rajeswaran et al. 2019): solve
    (I + H/λ) g = ∇_φ L_query(φ) by conjugate gradient, H the support loss's Hessian at φ."""
    names = list(phi)
    phi = {k: v.detach().requires_grad_() for k, v in phi.items()}
    params = [phi[k] for k in names]
    query = single_loss(model, phi, batch.query_x[i], batch.query_y[i], loss)
    rhs = flat(torch.autograd.grad(query, params))
    support = single_loss(model, phi, batch.support_x[i], batch.support_y[i], loss)
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


def proximal_residual(
    model: nn.Module, phi: Params, anchor: Params, batch: FewShotBatch, i: int, lam: float, loss: str = "mse"
) -> float:
    """‖∇_φ (L_support(φ) + λ/2 ‖φ − θ‖²)‖ of task ``i``: 0 where the inner problem is solved."""
    phi = {k: v.detach().requires_grad_() for k, v in phi.items()}
    support = single_loss(model, phi, batch.support_x[i], batch.support_y[i], loss)
    grads = torch.autograd.grad(support, list(phi.values()))
    total = sum(
        ((g + lam * (phi[k].detach() - anchor[k])) ** 2).sum() for k, g in zip(phi, grads, strict=True)
    )
    return float(torch.sqrt(total))
