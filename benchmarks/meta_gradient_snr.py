"""Is a MAML-TRPO run's meta-gradient signal or noise? Its signal-to-noise ratio at θ.

    python benchmarks/meta_gradient_snr.py CONFIG.yaml | RUN_DIR | CHECKPOINT.pt [--batches 3]
        [--seed 0] [--set KEY=VALUE ...] [--json FILE]

A config measures a fresh policy; a run directory (its ``checkpoint.pt``) or a checkpoint file
measures that θ under the config it was trained with. ``--set`` changes either (the episodes per
task, say). For each of ``--batches`` independent meta-batches drawn as training draws them, the
inner loop runs at θ, and the gradient of each task's
post-adaptation surrogate (the loss that TRPO's step follows, second order through the inner
step) is taken alone: g_1 … g_N. The meta-gradient is their mean ḡ. With Σ the covariance of
the g_i across tasks, E‖ḡ‖² = ‖E g‖² + tr Σ / N, so

    SNR = (‖ḡ‖² − tr Σ̂ / N) / (tr Σ̂ / N)

estimates, without bias in the numerator, how far the direction of the expected meta-gradient
stands out of the noise of one meta-batch: about 0 or below when the batch's gradient is noise,
1 when signal and noise weigh the same. The noise counts both the episodes' sampling and the
spread of the tasks' own gradients. Each batch gives one estimate; the table gives each and
their mean ± s.e., then the same ratio for each parameter tensor's block alone (where the signal
is: the log-std, a layer's weights or biases).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import torch

import metarl
from metarl.checkpoint import load_checkpoint
from metarl.config import Config, config_from_dict, merge, parse_overrides, saved_config
from metarl.episodes import Episodes
from metarl.evaluation import checkpoint_path, load_policy
from metarl.learners.maml_trpo import MAMLTRPO
from metarl.learners.rl import InnerBatch
from metarl.policies import Params


def sample_meta_batch(
    learner: MAMLTRPO, rng: np.random.Generator, generator: torch.Generator
) -> tuple[list[InnerBatch], Episodes, Params]:
    """One meta-batch as training draws it: the inner loop's batches, the post-adaptation
    episodes and the adapted parameters."""
    tasks = learner.sampler.sample_tasks(learner.config.meta_batch_size, rng)
    batches, valid, adapted, _ = learner.sample_inner_loop(tasks, rng, generator)
    return batches, valid, adapted


def per_task_gradients(
    learner: MAMLTRPO, batches: list[InnerBatch], valid: Episodes, adapted: Params
) -> torch.Tensor:
    """[N, P]: the gradient at θ of each task's post-adaptation surrogate, taken alone (their
    mean is the gradient of the meta-objective over the whole batch)."""
    params = list(learner.policy.parameters())
    rows = []
    for i in range(valid.obs.shape[1]):
        idx = torch.tensor([i], device=learner.device)
        old = {k: v[idx] for k, v in adapted.items()}
        loss, _ = learner.meta_objective([b.tasks(idx) for b in batches], valid.tasks(idx), old)(True)
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.flatten() for g in grads]).double().cpu())
    return torch.stack(rows)


def by_tensor(learner: MAMLTRPO, grads: torch.Tensor) -> dict[str, float]:
    """The SNR of each parameter tensor's block of the gradients: where the signal is."""
    out, start = {}, 0
    for name, p in learner.policy.named_parameters():
        out[name] = snr(grads[:, start : start + p.numel()])["snr"]
        start += p.numel()
    return out


def snr(grads: torch.Tensor) -> dict[str, float]:
    """The batch meta-gradient's squared norm, its noise (tr Σ̂ / N) and their SNR, from the
    [N, P] per-task gradients (N >= 2). A block that is exactly zero in every task has no SNR
    (NaN); one that is the same nonzero vector in every task has no noise (inf)."""
    n = grads.shape[0]
    if n < 2:
        raise ValueError(f"the SNR needs the gradients of at least 2 tasks, got {n}")
    mean_sq = float(grads.mean(0).pow(2).sum())
    noise = float(grads.var(0, unbiased=True).sum()) / n
    if noise == 0:
        return {"mean_sq": mean_sq, "noise": noise, "snr": math.nan if mean_sq == 0 else math.inf}
    return {"mean_sq": mean_sq, "noise": noise, "snr": (mean_sq - noise) / noise}


def measured_config(source: str, overrides: list[str]) -> tuple[Config, Path | None]:
    """The config to measure under and the checkpoint whose θ to load (None: a fresh policy)."""
    path = Path(source)
    if path.suffix in (".yaml", ".yml"):
        return metarl.load_config(path, overrides), None
    file = checkpoint_path(path, "latest")
    data = saved_config(load_checkpoint(file)["config"])
    return config_from_dict(merge(data, parse_overrides(overrides)), strict=False), file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a config (a fresh policy), a run directory or a checkpoint file")
    parser.add_argument("--batches", type=int, default=3, help="independent meta-batches (at least 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.batches < 1:
        parser.error(f"--batches: got {args.batches}, expected at least 1")
    config, checkpoint = measured_config(args.source, [f"seed={args.seed}", *args.set])
    if config.meta_batch_size < 2:
        parser.error(f"meta_batch_size: got {config.meta_batch_size}, the SNR needs at least 2 tasks")
    learner = metarl.learner_from_config(config)
    if not isinstance(learner, MAMLTRPO):
        parser.error(
            f"{config.algorithm}: only MAML-TRPO and FOMAML have the TRPO meta-objective measured here"
        )
    if checkpoint is not None:
        _, policy = load_policy(checkpoint)
        learner.policy.load_state_dict(policy.state_dict())
    rng = np.random.default_rng([args.seed, 7])
    generator = torch.Generator().manual_seed(args.seed)
    rows = []
    try:
        for b in range(args.batches):
            grads = per_task_gradients(learner, *sample_meta_batch(learner, rng, generator))
            row = {**snr(grads), "by_tensor": by_tensor(learner, grads)}
            rows.append(row)
            noise, mean_sq = row["noise"], row["mean_sq"]
            print(f"batch {b}: |mean g|^2 {mean_sq:.3e}  tr(cov)/N {noise:.3e}  SNR {row['snr']:+.3f}")
    finally:
        learner.close()
    values = [r["snr"] for r in rows]
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    at = str(checkpoint) if checkpoint is not None else "a fresh policy"
    print(
        f"{config.env} at {at}, {config.meta_batch_size} tasks x {config.episodes_per_task} episodes: "
        f"SNR {statistics.fmean(values):+.3f} ± {se:.3f} over {len(values)} meta-batches"
    )
    tensors = {name: statistics.fmean(r["by_tensor"][name] for r in rows) for name in rows[0]["by_tensor"]}
    print(
        "  by parameter tensor (mean over the batches): "
        + ", ".join(f"{k} {v:+.2f}" for k, v in tensors.items())
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"source": args.source, "set": args.set, "batches": rows},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
