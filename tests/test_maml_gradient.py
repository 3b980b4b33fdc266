"""The MAML meta-gradient through the inner PG step(s), against central finite differences."""

import pytest
import torch

from metarl.adaptation import inner_surrogate, pg_step
from metarl.optim.trpo import flat, set_flat_
from tests.conftest import random_episodes, tiny_maml


def meta_grad_and_fd(algo, batches, valid, eps=1e-6):
    params = list(algo.policy.parameters())
    loss_and_kl = algo.meta_objective(batches, valid)
    loss, _ = loss_and_kl(True)
    analytic = flat(torch.autograd.grad(loss, params))
    theta0 = flat([p.detach() for p in params]).clone()
    fd = torch.zeros_like(theta0)
    for i in range(theta0.numel()):
        for sign in (1, -1):
            shifted = theta0.clone()
            shifted[i] += sign * eps
            set_flat_(params, shifted)
            value, _ = loss_and_kl(False)
            fd[i] += sign * float(value.detach()) / (2 * eps)
    set_flat_(params, theta0)
    return analytic, fd


@pytest.mark.parametrize("discrete", [False, True], ids=["gaussian", "categorical"])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_second_order_meta_gradient_matches_finite_differences(inner_steps, discrete):
    algo, batches, valid = tiny_maml(inner_steps=inner_steps, discrete=discrete)
    analytic, fd = meta_grad_and_fd(algo, batches, valid)
    assert analytic.abs().max() > 1e-3
    torch.testing.assert_close(analytic, fd, atol=1e-7, rtol=1e-5)


def test_first_order_gradient_differs_from_the_true_meta_gradient():
    algo, batches, valid = tiny_maml(first_order=True)
    first_order, fd = meta_grad_and_fd(algo, batches, valid)
    rel_error = (first_order - fd).norm() / fd.norm()
    assert rel_error > 1e-2, f"first-order gradient unexpectedly exact ({rel_error:.2e})"


def test_adapt_takes_one_gradient_step_per_task():
    algo, batches, _ = tiny_maml()
    policy = algo.policy
    eps, adv = batches[0].episodes, batches[0].advantages.values
    theta = policy.params()
    adapted = pg_step(policy, theta, eps, adv, lr=0.5, first_order=True)
    for i in range(eps.obs.shape[1]):
        task_eps = type(eps)(*(x[:, i : i + 1] for x in (eps.obs, eps.actions, eps.rewards, eps.mask)))
        loss = inner_surrogate(policy, theta, task_eps, adv[:, i : i + 1], per_task=False).sum()
        grads = torch.autograd.grad(loss, list(theta.values()))
        for (name, p), g in zip(theta.items(), grads, strict=True):
            torch.testing.assert_close(adapted[name][i], p - 0.5 * g)


def test_random_episodes_fixture_is_deterministic():
    a = random_episodes(4, 2, 2, 2, 2, seed=1)
    b = random_episodes(4, 2, 2, 2, 2, seed=1)
    assert torch.equal(a.obs, b.obs) and torch.equal(a.rewards, b.rewards)


def test_meta_objective_given_the_sampled_adapted_params_equals_recomputing_them():
    algo, batches, valid = tiny_maml()
    old = algo.replay_inner_loop(algo.policy.params(), batches, create_graph=False)
    a = algo.meta_objective(batches, valid)(True)
    b = algo.meta_objective(batches, valid, {k: v.detach() for k, v in old.items()})(True)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-15)


def test_categorical_policy_log_prob_kl_and_sampling_match_torch_distributions():
    from torch.distributions import Categorical, kl_divergence

    from metarl.policies import CategoricalMLPPolicy

    torch.manual_seed(0)
    policy = CategoricalMLPPolicy(3, 4, [8]).double()
    other = CategoricalMLPPolicy(3, 4, [8]).double()
    obs = torch.randn(5, 3, dtype=torch.float64)
    actions = torch.tensor([0, 3, 1, 2, 3])
    (log_p,) = policy.dist(policy.params(), obs)
    (log_q,) = other.dist(other.params(), obs)
    p, q = Categorical(logits=log_p), Categorical(logits=log_q)
    torch.testing.assert_close(policy.log_prob((log_p,), actions), p.log_prob(actions))
    torch.testing.assert_close(policy.kl((log_p,), (log_q,)), kl_divergence(p, q))
    draws = policy.sample(
        policy.params(), obs[:1].expand(40000, 3), generator=torch.Generator().manual_seed(1)
    )
    assert draws.dtype == torch.int64 and draws.shape == (40000,)
    freq = torch.bincount(draws, minlength=4).double() / 40000
    torch.testing.assert_close(freq, log_p[0].exp(), atol=0.01, rtol=0)
