"""benchmarks/meta_gradient_snr.py: per-task meta-gradients that add up to the meta-gradient,
and the signal-to-noise estimate built on them."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import metarl
from metarl.config import config_from_dict
from tests.conftest import TINY

_spec = importlib.util.spec_from_file_location(
    "meta_gradient_snr", Path(__file__).resolve().parents[1] / "benchmarks" / "meta_gradient_snr.py"
)
snr_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(snr_bench)


def test_per_task_gradients_average_to_the_meta_gradient():
    learner = metarl.learner_from_config(config_from_dict({**TINY, "meta_batch_size": 4}))
    try:
        batch = snr_bench.sample_meta_batch(
            learner, np.random.default_rng(0), torch.Generator().manual_seed(0)
        )
        rows = snr_bench.per_task_gradients(learner, *batch)
        loss, _ = learner.meta_objective(*batch)(True)
        whole = torch.autograd.grad(loss, list(learner.policy.parameters()))
        blocks = snr_bench.by_tensor(learner, rows)
        sizes = {name: p.numel() for name, p in learner.policy.named_parameters()}
    finally:
        learner.close()
    flat = torch.cat([g.flatten() for g in whole]).double()
    assert rows.shape == (4, flat.numel())
    assert not torch.allclose(rows[0], rows[1])  # the tasks' gradients differ
    torch.testing.assert_close(rows.mean(0), flat, rtol=1e-4, atol=1e-6)
    # each tensor's block, in the order of the flattened gradient
    assert list(blocks) == list(sizes)
    start = 0
    for name, size in sizes.items():
        assert blocks[name] == pytest.approx(snr_bench.snr(rows[:, start : start + size])["snr"])
        start += size


def test_snr_subtracts_the_noise_of_the_batch_mean():
    # mean (2, 0): |mean|^2 = 4; per-dimension variances 2 and 0, so tr(cov)/N = 2/2 = 1
    out = snr_bench.snr(torch.tensor([[1.0, 0.0], [3.0, 0.0]]).double())
    assert out == {"mean_sq": pytest.approx(4.0), "noise": pytest.approx(1.0), "snr": pytest.approx(3.0)}
    # pure noise around zero: the estimate centres on 0, not on the positive |mean|^2 / noise
    g = torch.Generator().manual_seed(0)
    values = [snr_bench.snr(torch.randn(40, 50, generator=g).double())["snr"] for _ in range(400)]
    assert abs(np.mean(values)) < 0.1
    assert snr_bench.snr(torch.ones(3, 2).double())["snr"] == float("inf")  # no noise
    assert np.isnan(snr_bench.snr(torch.zeros(3, 2).double())["snr"])  # no gradient at all
    with pytest.raises(ValueError, match="at least 2 tasks"):
        snr_bench.snr(torch.ones(1, 2).double())


def test_a_run_is_measured_under_its_own_config(tmp_path):
    from metarl.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "iterations": 1, "inner": {"lr": 0.3}}))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    measured, checkpoint = snr_bench.measured_config(str(tmp_path / "run"), ["episodes_per_task=3"])
    assert checkpoint == tmp_path / "run" / "checkpoint.pt"
    assert (measured.inner.lr, measured.horizon, measured.episodes_per_task) == (0.3, TINY["horizon"], 3)
    fresh, none = snr_bench.measured_config(str(config), [])
    assert none is None and fresh.inner.lr == 0.3 and fresh.episodes_per_task == TINY["episodes_per_task"]
