"""FOMAML, Reptile and ProMP: their updates on tiny problems, and each trains and resumes."""

import pytest
import torch
import yaml

from metarl.adaptation import inner_surrogate
from metarl.cli import main
from metarl.config import load_config
from metarl.learners.reptile import reptile_update
from metarl.trainer import Trainer
from tests.conftest import TINY as _TINY
from tests.conftest import interrupt_at_iteration, tiny_maml

TINY = {**_TINY, "iterations": 3}


def test_reptile_update_is_theta_plus_epsilon_times_mean_difference():
    theta = {"w": torch.tensor([[1.0, -2.0]]), "b": torch.tensor([0.5])}
    adapted = {  # two tasks' W_i
        "w": torch.tensor([[[3.0, 0.0]], [[1.0, 2.0]]]),
        "b": torch.tensor([[1.5], [-0.5]]),
    }
    new = reptile_update(theta, adapted, epsilon=0.25)
    # by hand: mean W = [[2, 1]], [0.5]; θ + 0.25 (mean W − θ)
    torch.testing.assert_close(new["w"], torch.tensor([[1.25, -1.25]]))
    torch.testing.assert_close(new["b"], torch.tensor([0.5]))


def test_reptile_iteration_moves_theta_towards_the_adapted_parameters(tmp_path):
    config = load_config(_write(tmp_path, algorithm="reptile", reptile={"epsilon": 0.3}), [])
    trainer = Trainer(config, tmp_path / "run", progress=False)
    algo = trainer.algorithm
    seen = {}
    real = algo.sample_inner_loop

    def spy(*args):
        out = real(*args)
        seen["adapted"] = out[2]
        seen["theta"] = {k: v.detach().clone() for k, v in algo.policy.params().items()}
        return out

    algo.sample_inner_loop = spy
    algo.train_iteration(trainer.rng, trainer.generator)
    for name, p in algo.policy.named_parameters():
        expected = seen["theta"][name] + 0.3 * (seen["adapted"][name].mean(0) - seen["theta"][name])
        torch.testing.assert_close(p.detach(), expected)


def test_lvc_inner_surrogate_has_the_score_function_gradient_and_the_extra_curvature_term():
    algo, batches, _ = tiny_maml()
    policy, eps, adv = algo.policy, batches[0].episodes, batches[0].advantages.values
    theta = policy.params()
    params = list(theta.values())
    vpg = inner_surrogate(policy, theta, eps, adv, per_task=False, estimator="vpg").sum()
    lvc = inner_surrogate(policy, theta, eps, adv, per_task=False, estimator="lvc").sum()
    g_vpg = torch.autograd.grad(vpg, params, create_graph=True)
    g_lvc = torch.autograd.grad(lvc, params, create_graph=True)
    for a, b in zip(g_vpg, g_lvc, strict=True):
        torch.testing.assert_close(a, b)  # the same first derivative: the score-function gradient
    v = [torch.randn_like(p) for p in params]
    hv_vpg = torch.autograd.grad(sum((g * u).sum() for g, u in zip(g_vpg, v, strict=True)), params)
    hv_lvc = torch.autograd.grad(sum((g * u).sum() for g, u in zip(g_lvc, v, strict=True)), params)
    # LVC's Hessian adds −Σ_tasks mean_t[(∇log π · v) ∇log π A] (per-step weights 1/steps of task)
    T, N, E = eps.mask.shape
    extra = [torch.zeros_like(p) for p in params]
    counts = eps.mask.sum((0, 2))
    for t in range(T):
        for i in range(N):
            for e in range(E):
                if eps.mask[t, i, e] == 0:
                    continue
                dist = policy.dist(theta, eps.obs[t, i, e])
                logp = policy.log_prob(dist, eps.actions[t, i, e])
                grad = torch.autograd.grad(logp, params)
                dot = sum((g * u).sum() for g, u in zip(grad, v, strict=True))
                for k, g in enumerate(grad):
                    extra[k] -= dot * g * adv[t, i, e] / counts[i]
    for a, b, x in zip(hv_lvc, hv_vpg, extra, strict=True):
        torch.testing.assert_close(a - b, x)


def _write(tmp_path, **overrides):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**TINY, **overrides}))
    return path


@pytest.mark.parametrize(
    "overrides",
    [
        {"algorithm": "fomaml"},
        {"algorithm": "fomaml", "outer": {"optimizer": "adam", "lr": 0.01, "steps": 2}},
        {"algorithm": "reptile", "inner": {"steps": 2}},
        {"algorithm": "promp", "outer": {"lr": 0.01, "steps": 3}},
    ],
    ids=["fomaml-trpo", "fomaml-adam", "reptile", "promp"],
)
def test_each_algorithm_trains_changes_theta_and_resumes_exactly(tmp_path, overrides):
    config = load_config(_write(tmp_path, **overrides), [])
    full = Trainer(config, tmp_path / "full", progress=False)
    before = {k: v.detach().clone() for k, v in full.policy.state_dict().items()}
    metrics = full.train()
    assert metrics["meta/accepted"] == 1.0
    assert any(not torch.equal(before[k], v) for k, v in full.policy.state_dict().items())

    part = Trainer(config, tmp_path / "part", progress=False)
    interrupt_at_iteration(part, 3)
    with pytest.raises(KeyboardInterrupt):
        part.train()
    resumed = Trainer.resume(tmp_path / "part", progress=False)
    resumed.train()
    for name, value in full.policy.state_dict().items():
        assert torch.equal(value, resumed.policy.state_dict()[name]), name


def test_unknown_outer_optimizer_is_a_one_line_error(tmp_path, capsys):
    path = _write(tmp_path, algorithm="fomaml", outer={"optimizer": "sgd"})
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "outer.optimizer" in err and "'sgd'" in err and "trpo, adam" in err


def test_initial_mean_actions_are_near_zero_whatever_the_seed():
    # The mean head starts scaled by policy.init_output_scale (bias 0): with PyTorch's init some
    # seeds start with a policy that drifts (navigation seed 11), which MAML amplified.
    import torch

    from metarl.policies import make_policy

    obs = torch.randn(256, 2) * 0.5
    for seed in range(16):
        torch.manual_seed(seed)
        default = make_policy(2, 2, False, (100, 100), "relu", 0.0, 1.0)
        torch.manual_seed(seed)
        scaled = make_policy(2, 2, False, (100, 100), "relu", 0.0, 0.01)
        mean_default = default.dist(default.params(), obs)[0]
        mean_scaled = scaled.dist(scaled.params(), obs)[0]
        assert mean_scaled.abs().max() < 0.01  # PyTorch's init gives up to 0.22 on these states
        torch.testing.assert_close(mean_scaled, 0.01 * (mean_default - default.mean[-1].bias))
        # Only the head changes: the hidden layers are the same draws.
        torch.testing.assert_close(scaled.mean[0].weight, default.mean[0].weight, rtol=0, atol=0)
        torch.testing.assert_close(scaled.mean[-1].weight, 0.01 * default.mean[-1].weight)
        assert not scaled.mean[-1].bias.any()


def test_init_output_scale_is_validated():
    import pytest

    import metarl
    from metarl.errors import ConfigError

    with pytest.raises(ConfigError, match="init_output_scale"):
        metarl.MAMLTRPO("metarl/Navigation2D-v0", init_output_scale=2.0)


@pytest.mark.parametrize("adaptive", [False, True])
def test_promp_inner_kl_penalty_is_fixed_unless_adaptive(tmp_path, adaptive):
    # The authors' experiments keep eta fixed; the adaptive rule halves or doubles it per task.
    promp = {"init_inner_kl_coef": 0.5, "target_inner_kl": 1e-3, "adaptive_inner_kl": adaptive}
    config = load_config(_write(tmp_path, algorithm="promp", outer={"lr": 0.01, "steps": 3}, promp=promp), [])
    trainer = Trainer(config, tmp_path / "run", progress=False)
    algo = trainer.algorithm
    metrics = algo.train_iteration(trainer.rng, trainer.generator)
    coef = algo.kl_coef
    if adaptive:
        inner_kl = metrics["promp/inner_kl"]
        assert inner_kl > 0
        assert set(coef.tolist()) <= {0.25, 0.5, 1.0} and not torch.all(coef == 0.5)
    else:
        assert torch.all(coef == 0.5)
    assert metrics["promp/inner_kl_coef"] == pytest.approx(float(coef.mean()))


def test_promp_adaptive_inner_kl_must_be_a_boolean(tmp_path, capsys):
    path = _write(tmp_path, algorithm="promp", promp={"adaptive_inner_kl": "sometimes"})
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "promp.adaptive_inner_kl" in err and "'sometimes'" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("saved", [None, False])
def test_a_promp_checkpoint_from_before_the_fixed_penalty_resumes_with_the_adaptive_rule(tmp_path, saved):
    # Checkpoints written before promp.adaptive_inner_kl existed trained with the adaptive rule...
    config = load_config(_write(tmp_path, algorithm="promp", iterations=1), [])
    Trainer(config, tmp_path / "run", progress=False).train()
    file = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(file, weights_only=True)
    del state["config"]["promp"]["adaptive_inner_kl"]
    del state["config"]["promp"]["max_outer_kl"]
    if saved is not None:
        state["config"]["promp"]["adaptive_inner_kl"] = saved
        state["config"]["promp"]["max_outer_kl"] = 0.05
    torch.save(state, file)
    resumed = Trainer.resume(tmp_path / "run", progress=False, overrides=["iterations=2"])
    assert resumed.config.promp.adaptive_inner_kl is (saved is None)
    # ... and without the bound on the outer KL.
    assert resumed.config.promp.max_outer_kl == (0.0 if saved is None else 0.05)


def _promp_iteration(tmp_path, name, **overrides):
    """One ProMP iteration from a fresh seed-0 learner; returns the learner and its metrics."""
    config = load_config(_write(tmp_path, algorithm="promp", iterations=1, **overrides), [])
    trainer = Trainer(config, tmp_path / name, progress=False)
    return trainer.algorithm, trainer.algorithm.train_iteration(trainer.rng, trainer.generator)


def _kl_after_steps(metrics):
    """The logged ``promp/kl_after_step_<k>``, in order of k."""
    keys = sorted(
        (k for k in metrics if k.startswith("promp/kl_after_step_")), key=lambda k: int(k.rsplit("_", 1)[1])
    )
    assert [int(k.rsplit("_", 1)[1]) for k in keys] == list(range(1, len(keys) + 1))
    return [metrics[k] for k in keys]


def _assert_same_theta_and_adam(algo, twin):
    """θ and Adam's moments equal bit for bit."""
    for a, b in zip(algo.policy.parameters(), twin.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    mine, theirs = algo.optimizer.state_dict()["state"], twin.optimizer.state_dict()["state"]
    for i in theirs:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(mine[i][key], theirs[i][key])


def test_promp_max_outer_kl_undoes_the_step_that_crosses_it_and_keeps_the_ones_before(tmp_path):
    bound = 0.02
    free, free_metrics = _promp_iteration(tmp_path, "free", outer={"lr": 0.01, "steps": 5})
    assert free_metrics["meta/kl"] > bound and free_metrics["promp/outer_steps"] == 5
    bounded, metrics = _promp_iteration(
        tmp_path, "bounded", outer={"lr": 0.01, "steps": 5}, promp={"max_outer_kl": bound}
    )
    kept = int(metrics["promp/outer_steps"])
    assert 1 <= kept < 5 and metrics["promp/step_undone"] == 1.0 and metrics["meta/accepted"] == 1.0
    assert metrics["promp/step_halvings"] == 0.0
    assert 0 < metrics["meta/kl"] <= bound
    # The same iteration stopped after `kept` steps: the same θ and the same Adam state.
    twin, twin_metrics = _promp_iteration(tmp_path, "twin", outer={"lr": 0.01, "steps": kept})
    _assert_same_theta_and_adam(bounded, twin)
    assert metrics["meta/kl"] == twin_metrics["meta/kl"]
    assert metrics["meta/surrogate_after"] == twin_metrics["meta/surrogate_after"]
    assert _kl_after_steps(metrics) == _kl_after_steps(twin_metrics)
    assert len(_kl_after_steps(metrics)) == kept and _kl_after_steps(free_metrics)[kept] > bound


def test_promp_first_step_over_max_outer_kl_is_halved_with_the_iterations_step_size(tmp_path):
    bound, lr = 0.02, 0.1
    algo, metrics = _promp_iteration(
        tmp_path, "bounded", outer={"lr": lr, "steps": 5}, promp={"max_outer_kl": bound}
    )
    halvings, kept = int(metrics["promp/step_halvings"]), int(metrics["promp/outer_steps"])
    assert halvings >= 1 and kept >= 1 and metrics["meta/accepted"] == 1.0
    assert 0 < metrics["meta/kl"] <= bound
    assert algo.optimizer.param_groups[0]["lr"] == lr  # the configured step size is kept
    # The same as steps of the halved size from the start.
    twin, twin_metrics = _promp_iteration(tmp_path, "twin", outer={"lr": lr * 0.5**halvings, "steps": kept})
    _assert_same_theta_and_adam(algo, twin)
    for key in ("meta/kl", "meta/surrogate_before", "meta/surrogate_after"):
        assert metrics[key] == twin_metrics[key], key
    assert _kl_after_steps(metrics) == _kl_after_steps(twin_metrics)


def test_promp_logs_the_kl_after_each_kept_step(tmp_path):
    _, metrics = _promp_iteration(tmp_path, "five", outer={"lr": 0.01, "steps": 5})
    kls = _kl_after_steps(metrics)
    assert len(kls) == 5 and kls[-1] == metrics["meta/kl"]
    # The KL after step k is the meta/kl of the same iteration stopped after k steps.
    for k in (1, 3):
        _, twin = _promp_iteration(tmp_path, f"twin{k}", outer={"lr": 0.01, "steps": k})
        assert kls[k - 1] == pytest.approx(twin["meta/kl"], rel=1e-6, abs=1e-12)
        assert twin["meta/surrogate_before"] == metrics["meta/surrogate_before"]


def test_promp_first_step_that_halving_cannot_fit_is_a_rejected_meta_step_that_moves_nothing(tmp_path):
    algo, metrics = _promp_iteration(
        tmp_path, "run", outer={"lr": 0.1, "steps": 5}, promp={"max_outer_kl": 1e-12}
    )
    fresh = Trainer(load_config(_write(tmp_path, algorithm="promp"), []), tmp_path / "fresh", progress=False)
    assert metrics["meta/accepted"] == 0.0 and metrics["promp/outer_steps"] == 0.0
    assert metrics["promp/step_halvings"] == 10.0 and metrics["meta/kl"] == 0.0
    for a, b in zip(algo.policy.parameters(), fresh.algorithm.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert algo.optimizer.state_dict()["state"] == {}
    assert algo.optimizer.param_groups[0]["lr"] == 0.1
    assert "1024-fold" in algo.last_failure and "promp.max_outer_kl = 1e-12" in algo.last_failure


def test_promp_max_outer_kl_must_not_be_negative(tmp_path, capsys):
    path = _write(tmp_path, algorithm="promp", promp={"max_outer_kl": -0.1})
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "promp.max_outer_kl" in err and "-0.1" in err and ">= 0" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
