"""The learner's device: every learner runs with an explicit device, no tensor of a meta-step is
created off the policy's device, checkpoints hold CPU tensors, and (where CUDA exists) CPU and
GPU agree on a meta-step and a GPU run resumes exactly.

Without a GPU, device-clean code is checked by making "meta" torch's default device while a
learner works on the CPU: any tensor created without a device taken from its inputs lands on
"meta", and the first operation that mixes it with the policy's CPU tensors fails.
"""

import contextlib

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from metarl.cli import main
from metarl.config import Config, config_from_dict, curvature_fraction
from metarl.evaluation import adapt_and_evaluate
from metarl.trainer import Trainer
from tests.conftest import TINY

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

NAV = {**TINY, "device": "cpu"}
LEARNERS = {
    "maml_trpo": {"algorithm": "maml_trpo"},
    "maml_trpo-subsampled-curvature": {"algorithm": "maml_trpo", "trpo": {"curvature_tasks": 0.5}},
    "fomaml-trpo": {"algorithm": "fomaml"},
    "fomaml-adam": {"algorithm": "fomaml", "outer": {"optimizer": "adam"}},
    "reptile": {"algorithm": "reptile", "inner": {"steps": 2}},
    "promp": {"algorithm": "promp"},
}
SUPERVISED = ("maml", "fomaml", "reptile", "imaml", "pretrained")


@contextlib.contextmanager
def tensors_default_to_meta():
    """Tensors created without an explicit device land on "meta" inside the block."""
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


def _policy_devices(trainer: Trainer) -> set[str]:
    return {p.device.type for p in trainer.policy.parameters()}


def _adam_state_is_device_clean() -> bool:
    """Whether this torch's Adam creates its lazy state on its parameter's device.

    torch 2.13 does; torch 2.11 creates the step counter of its first step on the default device,
    which inside ``tensors_default_to_meta`` is "meta". Where it does not, the tests below let a
    first iteration create the optimizers' state before they check the next ones.
    """
    param = torch.zeros(1, device="cpu", requires_grad=True)
    param.grad = torch.ones(1, device="cpu")
    optimizer = torch.optim.Adam([param])
    with tensors_default_to_meta():
        try:
            optimizer.step()
        except RuntimeError:
            return False
    return True


ADAM_DEVICE_CLEAN = _adam_state_is_device_clean()


@pytest.mark.parametrize("name", list(LEARNERS))
def test_every_learner_creates_no_tensor_off_the_policys_device(tmp_path, name):
    config = config_from_dict({**NAV, **LEARNERS[name]})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert trainer.device == torch.device("cpu") and _policy_devices(trainer) == {"cpu"}
    if not ADAM_DEVICE_CLEAN:
        trainer.algorithm.train_iteration(trainer.rng, trainer.generator)
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    with tensors_default_to_meta():
        for _ in range(2):
            metrics = trainer.algorithm.train_iteration(trainer.rng, trainer.generator)
    trainer.sampler.close()
    assert _policy_devices(trainer) == {"cpu"}
    assert all(torch.isfinite(torch.tensor(v, device="cpu")) for v in metrics.values())
    after = trainer.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the meta-steps did something


@pytest.mark.parametrize("algorithm", SUPERVISED)
def test_every_supervised_learner_creates_no_tensor_off_the_models_device(tmp_path, algorithm):
    config = config_from_dict(
        {
            "env": "supervised/Sinusoid",
            "algorithm": algorithm,
            "meta_batch_size": 4,
            "policy": {"hidden_sizes": [8]},
            "device": "cpu",
        }
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    if not ADAM_DEVICE_CLEAN:
        trainer.algorithm.train_iteration(trainer.rng, trainer.generator)
    with tensors_default_to_meta():
        metrics = trainer.algorithm.train_iteration(trainer.rng, trainer.generator)
    assert _policy_devices(trainer) == {"cpu"}
    assert all(v == v for v in metrics.values())  # no NaN


def test_evaluation_adapts_on_the_given_device_and_leaves_the_policy_where_it_was(tmp_path):
    config = config_from_dict(NAV)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.sampler.close()
    with tensors_default_to_meta():
        result = adapt_and_evaluate(trainer.policy, config, num_tasks=2, steps=2, device="cpu")
    assert len(result["mean_return"]) == 3 and _policy_devices(trainer) == {"cpu"}


def test_checkpoints_hold_cpu_tensors_and_resume_exactly_with_an_explicit_device(tmp_path):
    config = config_from_dict(NAV)
    full = Trainer(config, tmp_path / "full", progress=False)
    full.train()
    part = Trainer(config_from_dict({**NAV, "iterations": 1}), tmp_path / "part", progress=False)
    part.train()
    resumed = Trainer.resume(tmp_path / "part", progress=False, device="cpu")
    resumed.config.iterations = 2
    resumed.train()
    state = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert {t.device.type for t in state["policy"].values()} == {"cpu"}
    for name, tensor in full.policy.state_dict().items():
        assert torch.equal(tensor, resumed.policy.state_dict()[name]), name


def test_device_settings_are_validated_in_one_line(tmp_path, capsys):
    config = tmp_path / "nav.yaml"
    config.write_text("env: metarl/Navigation2D-v0\niterations: 1\nmeta_batch_size: 2\n")
    assert main(["train", str(config), "--out", str(tmp_path / "r"), "--device", "gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "metarl: error: config key 'device' must be auto, cpu, cuda or cuda:N, got 'gpu'"
    if not torch.cuda.is_available():
        assert main(["train", str(config), "--out", str(tmp_path / "r"), "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip()
        assert "device 'cuda': this torch" in err and "sees no CUDA GPU" in err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_auto_curvature_is_exact_on_a_gpu_and_where_the_cpu_can_afford_it():
    cheetah = Config(meta_batch_size=40, episodes_per_task=20, horizon=200)
    nav = Config(meta_batch_size=20, episodes_per_task=20, horizon=100)
    assert cheetah.trpo.curvature_tasks == "auto"
    assert curvature_fraction(cheetah, "cpu") == 0.25 and curvature_fraction(cheetah, "cuda") == 1.0
    assert curvature_fraction(nav, "cpu") == 1.0 and curvature_fraction(nav, "cuda") == 1.0
    cheetah.trpo.curvature_tasks = 0.5  # an explicit value is kept on every device
    assert curvature_fraction(cheetah, "cpu") == 0.5 and curvature_fraction(cheetah, "cuda") == 0.5


# --- where CUDA exists ---------------------------------------------------------------------------
@CUDA
@pytest.mark.parametrize("name", ["maml_trpo", "fomaml-adam", "promp", "reptile"])
def test_cpu_and_gpu_agree_on_a_meta_step(tmp_path, name):
    start, step = {}, {}
    for device in ("cpu", "cuda"):
        config = config_from_dict({**NAV, **LEARNERS[name], "device": device})
        trainer = Trainer(config, tmp_path / device, progress=False)
        start[device] = parameters_to_vector(trainer.policy.parameters()).detach().cpu()
        trainer.algorithm.train_iteration(trainer.rng, trainer.generator)
        trainer.sampler.close()
        assert _policy_devices(trainer) == {"cuda" if device == "cuda" else "cpu"}
        step[device] = parameters_to_vector(trainer.policy.parameters()).detach().cpu() - start[device]
    assert torch.equal(start["cuda"], start["cpu"])
    # float32 sums differ between the devices: the steps agree to 0.1% of the step's length, not
    # elementwise (one measured TRPO step of length 0.88 differed by 1.1e-5 in its log-std).
    difference = torch.linalg.vector_norm(step["cuda"] - step["cpu"])
    assert difference <= 1e-3 * torch.linalg.vector_norm(step["cpu"]), (difference, step["cpu"].norm())


@CUDA
def test_a_gpu_run_resumes_exactly_on_the_gpu_and_its_checkpoint_loads_on_the_cpu(tmp_path):
    config = config_from_dict({**NAV, "iterations": 3, "device": "cuda"})
    full = Trainer(config, tmp_path / "full", progress=False)
    full.train()
    Trainer(config_from_dict({**NAV, "iterations": 2, "device": "cuda"}), tmp_path / "part", False).train()
    resumed = Trainer.resume(tmp_path / "part", progress=False)
    resumed.config.iterations = 3
    resumed.train()
    assert resumed.device.type == "cuda"
    for name, tensor in full.policy.state_dict().items():
        assert torch.equal(tensor, resumed.policy.state_dict()[name]), name
    state = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True, map_location=None)
    assert {t.device.type for t in state["policy"].values()} == {"cpu"}
