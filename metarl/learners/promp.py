"""ProMP (Rothfuss, Lee, Clavera, Asfour and Abbeel 2019, "ProMP: Proximal Meta-Policy Search").

* Inner step: the low-variance curvature (LVC) surrogate, whose Hessian keeps the term the
  score-function surrogate drops (see :func:`metarl.adaptation.inner_surrogate`).
* Outer objective, maximised with ``outer.steps`` Adam steps per iteration: the PPO-clip
  surrogate of the post-adaptation episodes, min(r A, clip(r, 1 ± ε) A) with r = π_θ'/π_θ'old,
  minus η_i · KL(π_θold || π_θ) on each task's pre-adaptation episodes.
* η_i is fixed at ``promp.init_inner_kl_coef``, as in the authors' experiments. With
  ``promp.adaptive_inner_kl`` it adapts after each iteration: halved when task i's inner KL is
  under target / 1.5, doubled when it is over target × 1.5. Adam bounds each step by its step
  size whatever η, so a run of doublings does not pull the KL back; it inflates Adam's
  second-moment estimate instead, which stalls the outer step long after η falls back
  (cheetah-vel seed 0: η rose to 1.8e4 within 15 iterations and θ stopped moving).
* ``promp.max_outer_kl`` bounds how far one iteration moves the adapted policies: an Adam step
  after which their mean KL from the sampling policies exceeds it is undone (θ and Adam's state
  both), and the iteration ends there, unless it was the first step: that one is halved, with
  the iteration's step size, until it fits (at most ``MAX_HALVINGS`` times). The clip does not
  bound the KL: the Adam steps follow the LVC meta-gradient, which is not the gradient of the
  surrogate they are scored on, and as the policy's std shrinks the same step moves it further
  (cheetah-vel seed 0 with a fixed η: a KL of 0.006, 0.02, 0.06, 0.19 after steps 1-4 of
  iteration 246, and the return fell from -77 to -302 by iteration 262).
* Logged per iteration, besides ``meta/kl`` and the surrogate before and after the meta-step:
  ``promp/kl_after_step_<k>``, the adapted policies' mean KL after each kept step k, which is
  what the bound is checked against.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metarl.adaptation import masked_task_mean
from metarl.episodes import Episodes
from metarl.learners.base import document
from metarl.learners.registry import register
from metarl.learners.rl import InnerBatch, RLLearner
from metarl.optim.first_order import finite_grads
from metarl.policies import Params

#: How many times the first outer step may be halved to fit under ``promp.max_outer_kl``.
MAX_HALVINGS = 10


@register
@document
class ProMP(RLLearner):
    """Proximal Meta-Policy Search: LVC inner step, clipped outer surrogate, inner-KL penalty."""

    algorithm = "promp"
    hyperparameters = (
        "outer.lr",
        "outer.steps",
        "promp.clip_eps",
        "promp.target_inner_kl",
        "promp.init_inner_kl_coef",
        "promp.adaptive_inner_kl",
        "promp.max_outer_kl",
    )

    def _init_optimizer(self) -> None:
        c = self.config
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=c.outer.lr)
        self.kl_coef = torch.full((c.meta_batch_size,), float(c.promp.init_inner_kl_coef), device=self.device)

    @property
    def estimator(self) -> str:
        return "lvc"

    def optimizer_state(self) -> dict[str, Any]:
        return {"adam": self.optimizer.state_dict(), "kl_coef": self.kl_coef.clone()}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["adam"])
        self.kl_coef = state["kl_coef"].to(self.device, copy=True)

    def meta_step(
        self, batches: list[InnerBatch], valid: Episodes, adapted: Params, rng: np.random.Generator
    ) -> dict[str, float]:
        c, policy = self.config, self.policy
        pre = batches[0].episodes
        valid_adv = self._advantages(valid)
        self._valid_nonfinite = valid_adv.nonfinite
        with torch.no_grad():  # copies: θ changes in place below, and views of it would follow
            old_pre = tuple(x.clone() for x in policy.dist(policy.params(), pre.obs))
            old_post = tuple(x.clone() for x in policy.dist(adapted, valid.obs, task_dim=1))
            old_logp = policy.log_prob(old_post, valid.actions)
        eps = c.promp.clip_eps
        parts: dict[str, Tensor] = {}
        # Per number of steps kept so far: the mean surrogate and outer KL at that θ (detached).
        at: dict[int, tuple[Tensor, Tensor]] = {}

        def surrogate(dist: tuple[Tensor, ...]) -> Tensor:
            """The PPO-clip surrogate of each task's post-update episodes under ``dist``."""
            ratio = torch.exp(policy.log_prob(dist, valid.actions) - old_logp)
            clipped = torch.min(ratio * valid_adv.values, ratio.clamp(1 - eps, 1 + eps) * valid_adv.values)
            return masked_task_mean(clipped, valid.mask)

        def loss() -> Tensor:
            theta = policy.params()
            dist = policy.dist(
                self.replay_inner_loop(theta, batches, create_graph=True), valid.obs, task_dim=1
            )
            parts["surrogate"] = surrogate(dist)
            parts["outer_kl"] = masked_task_mean(policy.kl(old_post, dist), valid.mask).mean().detach()
            at[steps] = (parts["surrogate"].detach().mean(), parts["outer_kl"])
            inner_kl = masked_task_mean(policy.kl(old_pre, policy.dist(theta, pre.obs)), pre.mask)
            return -parts["surrogate"].mean() + (self.kl_coef * inner_kl).mean()

        def measure() -> tuple[Tensor, Tensor, Tensor]:
            """Inner KL per task, mean outer KL and mean surrogate at the current θ."""
            theta = policy.params()
            adapted_after = self.replay_inner_loop(theta, batches, create_graph=False)  # needs autograd
            with torch.no_grad():
                inner = masked_task_mean(policy.kl(old_pre, policy.dist(theta, pre.obs)), pre.mask)
                dist = policy.dist(adapted_after, valid.obs, task_dim=1)
                outer = masked_task_mean(policy.kl(old_post, dist), valid.mask).mean()
                return inner, outer, surrogate(dist).mean()

        bound = c.promp.max_outer_kl
        base_lr = [g["lr"] for g in self.optimizer.param_groups]
        accepted, steps, halvings = True, 0, 0
        before: tuple[list[Tensor], dict[str, Any]] | None = None  # θ and Adam before the last step
        over: float | None = None  # the KL of a step that went past the bound

        def undo() -> None:
            assert before is not None
            with torch.no_grad():
                for p, saved in zip(policy.parameters(), before[0], strict=True):
                    p.copy_(saved)
            self.optimizer.load_state_dict(before[1])

        def fit_first_step(kl: float) -> float:
            """Halve the first step, and the iteration's step size with it, until it moves the
            adapted policies by at most the bound; returns the KL it ends with."""
            nonlocal halvings
            while kl > bound and halvings < MAX_HALVINGS:
                undo()  # θ and Adam's moments back; the gradient stays, so the step just shrinks
                halvings += 1
                for g, lr in zip(self.optimizer.param_groups, base_lr, strict=True):  # new dicts after undo
                    g["lr"] = lr * 0.5**halvings
                self.optimizer.step()
                kl = float(measure()[1])
            return kl

        for _ in range(c.outer.steps):
            value = loss()
            if bound and before is not None and parts["outer_kl"] > bound:
                over = float(parts["outer_kl"])
                if steps > 1 or (over := fit_first_step(over)) > bound:
                    break
                over, value = None, loss()
            if bound:
                theta_before = [p.detach().clone() for p in policy.parameters()]
                before = (theta_before, copy.deepcopy(self.optimizer.state_dict()))
            self.optimizer.zero_grad()
            value.backward()
            if not finite_grads(self.optimizer):
                self.optimizer.zero_grad()
                accepted, before = False, None
                self.last_failure = "non-finite gradient"
                break
            self.optimizer.step()
            steps += 1
        if over is None:
            inner_kl, outer_kl, final_surrogate = measure()
            if bound and before is not None and outer_kl > bound:
                over = float(outer_kl)
                if steps == 1 and (over := fit_first_step(over)) <= bound:
                    over = None
                    inner_kl, outer_kl, final_surrogate = measure()
        if over is not None and before is not None:
            undo()
            if steps == 1:
                accepted = False
                self.last_failure = (
                    f"the first Adam step, shrunk {2**halvings}-fold, still moved the adapted policies by a "
                    f"KL of {over:.3g}, over promp.max_outer_kl = {bound:g}"
                )
            steps -= 1
            inner_kl, outer_kl, final_surrogate = measure()
        for g, lr in zip(self.optimizer.param_groups, base_lr, strict=True):
            g["lr"] = lr
        if c.promp.adaptive_inner_kl:
            target = c.promp.target_inner_kl
            self.kl_coef = torch.where(inner_kl < target / 1.5, self.kl_coef / 2, self.kl_coef)
            self.kl_coef = torch.where(inner_kl > target * 1.5, self.kl_coef * 2, self.kl_coef)
        kl_after_step = [*(at[k][1] for k in range(1, steps)), outer_kl][:steps]
        return {
            "meta/accepted": float(accepted),
            "meta/kl": float(outer_kl),
            "meta/surrogate_before": float(at[0][0]),
            "meta/surrogate_after": float(final_surrogate),
            **{f"promp/kl_after_step_{k}": float(kl) for k, kl in enumerate(kl_after_step, 1)},
            "promp/inner_kl": float(inner_kl.mean()),
            "promp/inner_kl_coef": float(self.kl_coef.mean()),
            "promp/outer_steps": float(steps),
            "promp/step_undone": float(over is not None),
            "promp/step_halvings": float(halvings),
        }
