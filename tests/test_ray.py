"""The Ray sampler: the same episodes as the local sampler for any number of workers, recovery
from a killed worker, and a clear error without Ray."""

import os
import signal
import sys

import numpy as np
import pytest
import torch

from metarl.errors import MetarlError
from metarl.policies import GaussianMLPPolicy
from metarl.sampling.local import Sampler

ray = pytest.importorskip("ray")

ENV = "metarl/HalfCheetahVel-v0"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    from metarl.sampling.ray import init_ray

    init_ray(num_cpus=2)  # as metarl starts it, trying again if a loaded machine delays it
    yield
    ray.shutdown()


def _episodes(sampler, per_task):
    from metarl.sampling.ray import RaySampler  # noqa: F401

    torch.manual_seed(0)
    policy = GaussianMLPPolicy(17, 6, [16])
    tasks = sampler.sample_tasks(3, np.random.default_rng(0))
    sampler.set_tasks(tasks)
    params = policy.params()
    if per_task:  # three different adapted parameter sets
        params = {k: torch.stack([v + 0.1 * i for i in range(3)]) for k, v in params.items()}
    return sampler.sample(
        policy, params, np.random.default_rng(1), torch.Generator().manual_seed(2), per_task
    )


@pytest.fixture
def driver_threads(request):
    """The driver's torch thread count for one test (the Ray workers run on one), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("driver_threads", [1, 2], indirect=True)
@pytest.mark.parametrize("per_task", [False, True])
def test_ray_episodes_equal_local_episodes_with_one_and_two_workers(per_task, driver_threads):
    from metarl.sampling.ray import RaySampler

    local = Sampler(ENV, 3, 2, 20)
    expected = _episodes(local, per_task)
    local.close()
    for workers in (1, 2):
        sampler = RaySampler(ENV, 3, 2, 20, num_workers=workers)
        got = _episodes(sampler, per_task)
        sampler.close()
        for name in ("obs", "actions", "rewards", "mask"):
            assert torch.equal(getattr(got, name), getattr(expected, name)), (workers, name)
    assert torch.get_num_threads() == driver_threads  # sampling restored the driver's count


def test_a_killed_worker_is_restarted_and_its_shard_resampled_identically(caplog, monkeypatch):
    from metarl.sampling import ray as ray_backend
    from metarl.sampling.ray import RaySampler

    # This checks recovery, not its speed: on a starved machine a new actor can take minutes
    # to import torch and MuJoCo (measured beside two trainings at nice 10: over 120 s).
    monkeypatch.setattr(ray_backend, "RESTART_TIMEOUT_S", 1800)
    sampler = RaySampler(ENV, 3, 2, 20, num_workers=2)
    expected = _episodes(sampler, False)
    os.kill(sampler.worker_pids()[1], signal.SIGKILL)
    got = _episodes(sampler, False)
    assert sampler.restarts >= 1 and "re-sampling its" in caplog.text
    for name in ("obs", "actions", "rewards", "mask"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
    sampler.close()


def test_without_ray_the_backend_says_how_to_install_it(monkeypatch):
    from metarl.sampling.ray import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MetarlError, match=r"pip install 'metarl\[ray\]'"):
        import_ray()


def test_train_with_ray_address_local_logs_the_same_metrics_as_local_sampling(tmp_path, capsys):
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from metarl.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "env": "metarl/Navigation2D-v0",
                "iterations": 2,
                "meta_batch_size": 3,
                "episodes_per_task": 2,
                "horizon": 10,
                "policy": {"hidden_sizes": [8]},
                "sampler": {"num_workers": 2},
            }
        )
    )
    curves = []
    for name, extra in [("local", []), ("ray", ["--ray-address", "local"])]:
        assert main(["train", str(config), "--out", str(tmp_path / name), "--no-progress", *extra]) == 0
        events = EventAccumulator(str(tmp_path / name))
        events.Reload()
        curves.append([e.value for e in events.Scalars("return/post_adaptation")])
    assert "sampler: Ray, 2 workers" in capsys.readouterr().err
    assert curves[0] == curves[1]
