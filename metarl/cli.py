"""The ``metarl`` command: train, evaluate, envs.

User mistakes (bad config, unknown env, missing run) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from metarl.errors import MetarlError, TrainingStopped

EXIT_USAGE = 2
EXIT_STOPPED = 3  # training stopped itself (e.g. repeated failed meta-steps)
_ACTIVE: dict[str, Any] = {}  # the trainer of this command, for the message of an interrupt


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run stops between two checkpoint writes' effects."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


def _default_sigterm_in_child() -> None:
    """Forked workers (AsyncVectorEnv) end on SIGTERM as usual, without the parent's handler
    (a job scheduler sends it to the whole process group); the parent then closes what is left."""
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_sigterm_in_child)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has exited (``metarl summary RUN | head``)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLERR)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() (Windows), or no real stdout
        return False


def _interrupted(exc: KeyboardInterrupt) -> int:
    """The one line printed for Ctrl-C or SIGTERM, with the command that continues the run."""
    name = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    trainer = _ACTIVE.get("trainer")
    baseline = _ACTIVE.get("baseline")
    if baseline is not None and baseline.kind != "random":
        if baseline.saved_timesteps is None:
            print(
                f"metarl: interrupted ({name}) before PPO's first update; start again with: "
                f"{baseline.restart}",
                file=sys.stderr,
            )
        else:
            print(
                f"metarl: interrupted ({name}); PPO's state after {baseline.saved_timesteps:,} of "
                f"{baseline.timesteps:,} env steps is kept; continue with: {baseline.resume}",
                file=sys.stderr,
            )
    elif trainer is None:
        print(f"metarl: interrupted ({name})", file=sys.stderr)
    elif trainer.saved_iteration is None:
        print(
            f"metarl: interrupted ({name}) before the first checkpoint; start again with: "
            f"{_ACTIVE.get('rerun', 'metarl train CONFIG')} --out {trainer.out_dir} --force",
            file=sys.stderr,
        )
    else:
        print(
            f"metarl: interrupted ({name}); the checkpoint of iteration {trainer.saved_iteration} is "
            f"kept; continue with: metarl train --resume {trainer.out_dir}",
            file=sys.stderr,
        )
    return 143 if isinstance(exc, Terminated) else 130


def _train(args: argparse.Namespace) -> int:
    from metarl.config import load_config
    from metarl.device import describe
    from metarl.learners.registry import kind_of
    from metarl.runs import RunDirectory
    from metarl.tasks import check_scoring_env, check_task_env, make_env, resolve_env_id
    from metarl.trainer import Trainer

    if args.resume:
        if args.config or args.seed is not None or args.out or args.ray_address:
            raise MetarlError("--resume DIR takes no CONFIG, --out, --seed or --ray-address")
        trainer = Trainer.resume(
            args.resume, progress=not args.no_progress, device=args.device, overrides=args.set
        )
    else:
        if not args.config:
            raise MetarlError("train needs a CONFIG.yaml (or --resume DIR)")
        overrides = list(args.set or [])
        if args.seed is not None:
            overrides.append(f"seed={args.seed}")
        if args.ray_address:
            overrides += ["sampler.backend=ray", f"sampler.ray_address={args.ray_address}"]
        if args.device:
            overrides.append(f"device={args.device}")
        config = load_config(args.config, overrides)
        if kind_of(config.env) == "rl":
            spec = resolve_env_id(config.env)
            if not spec.id.startswith("metarl/"):  # a user's env: check the task protocol first
                check_task_env(make_env(config.env, **config.env_kwargs))
                if config.eval_env_kwargs:  # validation's and evaluate's env, too
                    check_scoring_env(config)
                    check_task_env(make_env(config.env, **config.scoring_env_kwargs()))
        out = (
            Path(args.out)
            if args.out
            else Path("runs") / (f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        )
        RunDirectory(out).check_new(args.force)  # before the sampler starts: refuse in one line
        trainer = Trainer(config, out, progress=not args.no_progress, force=args.force)
    _ACTIVE["trainer"] = trainer
    if args.config:
        _ACTIVE["rerun"] = f"metarl train {args.config}"
    where = f"run directory: {trainer.out_dir}"
    if trainer.sampler is not None and trainer.sampler.backend == "ray":
        where += f"; sampler: Ray, {len(trainer.sampler.workers)} workers"
    elif trainer.sampler is not None:
        env = trainer.sampler.env
        where += (
            f"; sampler: {type(env.unwrapped).__name__} "
            f"({env.num_envs} envs, backend {trainer.sampler.backend}"
            + (
                f", {chosen}"
                if (chosen := getattr(trainer.sampler, "chosen_by", "")).startswith("auto")
                else ""
            )
            + ")"
        )
    print(f"{where}; device: {describe(trainer.device)}", file=sys.stderr)
    metrics = trainer.train()
    if metrics:
        kind = "return" if "return/pre_adaptation" in metrics else "loss"
        print(
            f"done: {trainer.iteration} iterations, {kind} pre {metrics[f'{kind}/pre_adaptation']:.3f}"
            f" post {metrics[f'{kind}/post_adaptation']:.3f}; tensorboard --logdir {trainer.out_dir}"
        )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from metarl.evaluation import adapt_and_evaluate, checkpoint_path, load_policy
    from metarl.learners.registry import kind_of
    from metarl.reference_methods import evaluate_oracle
    from metarl.tasks import make_env

    # Every check on the arguments runs before the evaluation: nothing runs for minutes to fail.
    _check_seed("--seed", args.seed)
    if args.tasks < 1 or args.steps < 0:
        raise MetarlError(f"need --tasks >= 1 and --steps >= 0, got {args.tasks} and {args.steps}")
    for flag, value in (("--episodes", args.episodes), ("--shots", args.shots)):
        if value is not None and value < 1:
            raise MetarlError(f"need {flag} >= 1, got {value}")
    _check_step_size("--lr", args.lr, positive=True)
    _check_step_size("--later-lr", args.later_lr, positive=False)  # <= 0: adapt_and_evaluate says it
    _output_file("--json", args.json, "result.json")
    env_kwargs = _evaluation_env_kwargs(args.set or [])
    file = checkpoint_path(args.run, args.checkpoint)
    before = _checkpoint_record(file) if file.is_file() else None  # else load_policy says why
    config, policy = load_policy(args.run, which=args.checkpoint)
    scored = _checkpoint_record(file)
    _check_unchanged(before, scored)
    if args.adaptation is not None and kind_of(config.env) != "supervised":
        raise MetarlError(
            f"--adaptation {args.adaptation} applies to few-shot (supervised/) runs; "
            f"{args.run} trained on {config.env}"
        )
    if env_kwargs:
        if kind_of(config.env) == "supervised":
            raise MetarlError(f"--set env_kwargs.* applies to RL runs; {args.run} trained on {config.env}")
        config = dataclasses.replace(config, eval_env_kwargs={**config.eval_env_kwargs, **env_kwargs})
        # An argument the env refuses: one line now, not after the first lines of the evaluation.
        make_env(args.env or config.env, **config.scoring_env_kwargs()).close()
    method = "oracle" if policy is None else getattr(policy, "method", config.algorithm)
    iteration = "" if policy is None else f", iteration {getattr(policy, 'iteration', '?')}"
    if args.device:
        from metarl.device import resolve_device

        resolve_device(args.device)  # a bad value: one line before anything runs
    where = "; the oracle acts on the CPU (SB3)" if policy is None else ""
    print(
        f"scoring {checkpoint_path(args.run, args.checkpoint)} ({method}{iteration}) on {args.tasks} "
        f"held-out tasks of {args.env or config.env}{where}",
        file=sys.stderr,
    )
    if policy is None:  # the oracle baseline: its SB3 policy sees the task; no adaptation
        result = evaluate_oracle(
            args.run, config, args.tasks, args.seed, args.episodes, deterministic=args.deterministic
        )
        _check_unchanged(scored, _checkpoint_record(file))  # it reads both files again, later
        print(f"{config.env}: oracle on {args.tasks} held-out tasks (seed {args.seed})")
        print(f"return {result['mean_return'][0]:.2f} ± {result['stderr'][0]:.2f}")
        _write_json(args.json, {**result, "checkpoint": scored})
        return 0
    if kind_of(config.env) == "supervised":
        from metarl.learners.base import load

        learner = load(args.run, which=args.checkpoint)
        result = learner.evaluate(
            args.tasks,
            args.steps,
            args.seed,
            k_shot=args.shots,
            lr=args.lr,
            device=args.device,
            adaptation=args.adaptation,
        )
        key = "mean_mse" if "mean_mse" in result else "mean_loss"
        print(
            f"{config.env}: {args.tasks} held-out tasks, {result['k_shot']}-shot (seed {args.seed}),"
            f" {result['adaptation']} steps of {result['lr']:g}"
        )
        print(f"{'steps':>5}  {'query ' + key[5:].replace('mse', 'MSE'):>12}  {'stderr':>8}")
        for k, mean, err in zip(result["steps"], result[key], result["stderr"], strict=True):
            print(f"{k:>5}  {mean:>12.3f}  {err:>8.3f}")
        _write_json(args.json, {**result, "checkpoint": scored})
        return 0
    result = adapt_and_evaluate(
        policy,
        config,
        num_tasks=args.tasks,
        steps=args.steps,
        seed=args.seed,
        episodes_per_task=args.episodes,
        lr=args.lr,
        later_lr=args.later_lr,
        env_id=args.env,
        progress=True,
        device=args.device,
    )
    print(f"{result['env_id']}: {args.tasks} held-out tasks (seed {args.seed})")
    print(f"{'steps':>5}  {'mean return':>12}  {'stderr':>8}")
    for k, mean, err in zip(result["steps"], result["mean_return"], result["stderr"], strict=True):
        print(f"{k:>5}  {mean:>12.2f}  {err:>8.2f}")
    _write_json(args.json, {**result, "checkpoint": scored})
    return 0


def _envs(args: argparse.Namespace) -> int:
    import gymnasium as gym

    rows = []
    for env_id in sorted(i for i in gym.registry if i.startswith("metarl/")):
        spec = gym.spec(env_id)
        env = gym.make(env_id)
        try:
            dist = (
                getattr(env.unwrapped, "task_distribution", "")
                or ((type(env.unwrapped).__doc__ or "").strip().splitlines()[0])
            )
            rows.append(
                (
                    env_id,
                    str(env.observation_space.shape),
                    str(env.action_space.shape),
                    str(spec.max_episode_steps),
                    "yes" if spec.vector_entry_point else "no",
                    dist,
                )
            )
        finally:
            env.close()
    header = ("id", "obs", "act", "horizon", "vectorized", "task distribution")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    print(fmt.format(*header))
    for row in rows:
        print(fmt.format(*row))
    return 0


def _check_seed(flag: str, seed: int) -> None:
    from metarl.config import MAX_SEED

    if not 0 <= seed <= MAX_SEED:
        raise MetarlError(f"{flag}: got {seed}, expected an integer from 0 to {MAX_SEED} (2**32 - 1)")


def _check_step_size(flag: str, value: float | None, positive: bool) -> None:
    """``--lr``-like flags: a finite number (and > 0 where ``positive``), or a one-line error."""
    import math

    if value is not None and (not math.isfinite(value) or (positive and value <= 0)):
        raise MetarlError(f"{flag}: got {value}, expected a finite number > 0")


def _output_file(flag: str, path: str | None, example: str, suffixes: tuple[str, ...] = ()) -> Path | None:
    """Check, before any work, that ``path`` names a file that can be written: not a directory
    (nor ending in a slash), under no file, in a writable folder, with one of ``suffixes`` if
    given. ``example`` is the file name suggested for a directory."""
    import os

    if not path:
        return None
    out = Path(path)
    if path.endswith(("/", os.sep)) or out.is_dir():
        raise MetarlError(f"{flag} {path!r} is a directory; give a file name, e.g. {str(out / example)!r}")
    existing = next(p for p in out.absolute().parents if p.exists())
    if not existing.is_dir():
        raise MetarlError(f"{flag} {path!r}: {str(existing)!r} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MetarlError(f"{flag} {path!r}: {str(existing)!r} is not writable")
    if suffixes and out.suffix.lower().lstrip(".") not in suffixes:
        got = f"ends in {out.suffix!r}" if out.suffix else "has no file extension"
        shown = ", ".join("." + s for s in suffixes[:6]) + (", ..." if len(suffixes) > 6 else "")
        like = str(out.with_suffix("." + suffixes[0]))
        raise MetarlError(f"{flag} {path!r} {got}; name a {shown} file, e.g. {like!r}")
    return out


def _evaluation_env_kwargs(overrides: list[str]) -> dict[str, Any]:
    """``evaluate --set env_kwargs.KEY=VALUE``: env arguments that replace the run's for the
    held-out tasks, e.g. scoring a policy trained with a shaped reward on the paper's reward."""
    from metarl.config import given_keys, parse_overrides

    parsed = parse_overrides(overrides)
    other = [key for key in given_keys(parsed) if key != "env_kwargs"]
    if other:
        raise MetarlError(
            f"evaluate --set takes env_kwargs.KEY=VALUE (the env the held-out tasks run in), got {other[0]!r}"
        )
    env_kwargs = parsed.get("env_kwargs", {})
    if not isinstance(env_kwargs, dict):
        raise MetarlError(f"evaluate --set takes env_kwargs.KEY=VALUE, got env_kwargs={env_kwargs!r}")
    return env_kwargs


def _checkpoint_record(file: Path) -> dict[str, Any]:
    """The file an evaluation scores and its SHA-256, kept in the result: file times do not
    survive a clone, so this is what tells a later script whether the result is still current.
    A PPO baseline's policy is its ``ppo.zip`` beside ``checkpoint.pt``: that file's record is
    added as ``"ppo"``."""
    import hashlib

    from metarl.reference_methods import PPO_FILE

    def record(path: Path) -> dict[str, Any]:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return {"file": str(path), "sha256": digest.hexdigest()}

    scored = record(file)
    if file.name == "checkpoint.pt" and (file.parent / PPO_FILE).is_file():
        scored["ppo"] = record(file.parent / PPO_FILE)
    return scored


def _check_unchanged(before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    """Refuse (one line) a result whose checkpoint, or PPO baseline's ``ppo.zip``, a run still
    training replaced between two reads: what was scored would not be what the JSON records."""
    if before is None or before == after:
        return
    changed = [
        r["file"]
        for r, old in ((after, before), (after.get("ppo"), before.get("ppo")))
        if r is not None and (old is None or r["sha256"] != old["sha256"])
    ]
    names = " and ".join(changed) or after["file"]
    raise MetarlError(f"{names} was replaced while it was loaded; run evaluate again")


def _write_json(path: str | None, result: dict) -> None:
    """Write ``result`` to ``path`` (checked by :func:`_output_file` before the work) through a
    temporary file, so that a failed write leaves an earlier file of that name whole."""
    import os

    if not path:
        return
    out = _output_file("--json", path, "result.json")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MetarlError(
            f"cannot write --json {path!r}: {exc.strerror or exc}; the figures printed above are the results"
        ) from None
    print(f"wrote {path}")


def _baseline(args: argparse.Namespace) -> int:
    from metarl.config import load_config
    from metarl.reference_methods import (
        PPOProgress,
        check_no_unfinished_ppo,
        make_baseline,
        resume_baseline,
    )
    from metarl.runs import RunDirectory
    from metarl.tasks import check_scoring_env

    if args.resume:
        flags = {
            "KIND": args.kind,
            "CONFIG": args.config,
            "--out": args.out,
            "--num-envs": args.num_envs,
            "--force": args.force or None,
        }
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            raise MetarlError(
                "--resume DIR continues the baseline as it started (--timesteps N: to N env steps in "
                "all; --set num_threads=N, ppo.vec_env=V or sampler.num_threads=N: on other threads, "
                f"its envs stepped otherwise); it takes no {', '.join(given)}"
            )
        command = f"metarl baseline --resume {args.resume}"
        if args.timesteps is not None:
            command += f" --timesteps {args.timesteps}"
        command += "".join(f" --set {item}" for item in args.set or [])
        progress = PPOProgress("PPO", Path(args.resume), 0, restart=command, resume=command)
        _ACTIVE["baseline"] = progress
        out = resume_baseline(args.resume, args.timesteps, progress, overrides=args.set)
        print(
            f"finished the {progress.kind} baseline ({progress.timesteps:,} PPO env steps) in {out}; "
            f"evaluate it with: metarl evaluate {out}"
        )
        return 0
    if args.kind is None or args.config is None:
        raise MetarlError("baseline needs KIND and CONFIG (or --resume DIR)")
    timesteps = 1_000_000 if args.timesteps is None else args.timesteps
    for flag, value in (("--timesteps", timesteps), ("--num-envs", args.num_envs)):
        if value is not None and value < 1:
            raise MetarlError(f"{flag}: got {value}, expected a positive integer")
    overrides = list(args.set or [])
    if args.num_envs is not None:  # --num-envs N is --set ppo.num_envs=N
        overrides.append(f"ppo.num_envs={args.num_envs}")
    config = load_config(args.config, overrides)
    check_scoring_env(config)  # what evaluate will score the baseline with: not after 1 M PPO steps
    out = Path(args.out) if args.out else Path("runs") / f"{Path(args.config).stem}-{args.kind}"
    # --out naming a file, a run there without --force, ...: one line before anything runs.
    check_no_unfinished_ppo(out, args.force)
    RunDirectory(out).check_new(args.force, resume_hint=False)
    restart = f"metarl baseline {args.kind} {args.config} --out {out} --force"
    resume = f"metarl baseline --resume {out}"
    progress = PPOProgress(args.kind, out, timesteps, restart=restart, resume=resume)
    _ACTIVE["baseline"] = progress
    make_baseline(args.kind, config, out, timesteps, force=args.force, progress=progress)
    print(f"wrote the {args.kind} baseline to {out}; evaluate it with: metarl evaluate {out}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from metarl.plotting import plot

    first = ["png", "pdf", "svg"]  # shown first in the message
    formats = tuple(first + sorted(set(FigureCanvasAgg.get_supported_filetypes()) - set(first)))
    _output_file("--out", args.out, "plot.png", suffixes=formats)
    out = plot(args.inputs, args.out, title=args.title, seeds=args.seeds)
    print(f"wrote {out}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from metarl.summary import format_summary, run_summary

    summaries = [run_summary(run) for run in args.runs]  # every error before any output
    print("\n\n".join(format_summary(s) for s in summaries))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from metarl.plotting import compare_table, load_results, paper_table, seed_table, task_table

    results = load_results(args.results)
    paper = paper_table(results, seeds=args.seeds) if args.paper else None
    by_task = task_table(results) if args.by_task else None
    print(compare_table(results))
    if args.seeds:
        print()
        print(seed_table(results))
    if paper:
        print()
        print(paper)
    if by_task:
        print()
        print(by_task)
    return 0


def _fractions(text: str) -> list[float]:
    """``--fractions 0.1,0.25,1`` as a list of numbers in (0, 1], or a one-line error."""
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 < v <= 1 for v in values):
        raise MetarlError(
            f"--fractions: got {text!r}, expected numbers in (0, 1] separated by commas (0.1,0.25,1)"
        )
    return values


def _thread_counts(text: str | None) -> list[int]:
    """``--threads 1,2,4`` as a list of positive integers, or a one-line error."""
    if not text:
        return []
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise MetarlError(f"--threads: got {text!r}, expected positive integers separated by commas (1,2,4)")
    return counts


def _bench(args: argparse.Namespace) -> int:
    from metarl import bench

    _check_seed("--seed", args.seed)
    _output_file("--json", args.json, "bench.json")
    if args.what == "sampler":
        if args.device and args.backend != "warp":
            raise MetarlError(
                "--device applies to bench iteration and to bench sampler --backend warp; "
                "the CPU samplers run on the CPU"
            )
        if args.warp_envs is not None and args.warp_envs < 1:
            raise MetarlError(f"--warp-envs: got {args.warp_envs}, expected a positive integer")
        for name in ("num_envs", "steps", "async_envs", "rounds"):
            if getattr(args, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise MetarlError(f"{flag}: got {getattr(args, name)}, expected a positive integer")
        threads = _thread_counts(args.threads)
        result = bench.bench_sampler(
            args.env,
            args.num_envs,
            args.steps,
            args.async_envs,
            args.seed,
            threads=threads,
            rounds=args.rounds,
            backend=args.backend,
            warp_envs=args.warp_envs,
            device=args.device or "auto",
        )
        print(bench.format_sampler(result))
    elif args.what == "curvature":
        if not args.run:
            raise MetarlError("bench curvature needs --run RUN_DIR_OR_CHECKPOINT (a MAML-TRPO run)")
        result = bench.bench_curvature(
            args.run,
            _fractions(args.fractions),
            batches=args.batches,
            seed=args.seed,
            which=args.checkpoint,
            overrides=args.set or [],
            device=args.device,
        )
        print(bench.format_curvature(result))
    elif args.what == "ppo":
        if not args.config:
            raise MetarlError("bench ppo needs --config FILE (its ppo: section is what is timed)")
        result = bench.bench_ppo(
            args.config, args.iterations, args.set or [], oracle=args.baseline == "oracle"
        )
        print(bench.format_ppo(result))
    else:
        if not args.config:
            raise MetarlError("bench iteration needs --config FILE")
        if args.iterations < 1:
            raise MetarlError(f"--iterations: got {args.iterations}, expected a positive integer")
        result = bench.bench_iteration(args.config, args.iterations, args.set or [], device=args.device)
        print(bench.format_iteration(result))
    _write_json(args.json, result)  # what was measured, also when a part failed (below)
    if result.get("failed"):
        raise MetarlError(bench.failure_line(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    verbose = "log metarl's progress (each training iteration) to stderr"
    parser = argparse.ArgumentParser(prog="metarl", description="Meta-RL on Gymnasium.")
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose)
    # after the command too; SUPPRESS keeps `metarl -v train` from being reset by the command's default
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="meta-train from a YAML config", parents=[common])
    train.add_argument("config", nargs="?", help="experiment config (experiments/*.yaml)")
    train.add_argument("--out", help="run directory (default runs/<config>-<time>)")
    train.add_argument("--seed", type=int, help="override the config's seed")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a key (with --resume: iterations, num_threads, max_failed_iterations, "
        "checkpoint.keep_last or sampler.num_threads)",
    )
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    train.add_argument("--force", action="store_true", help="overwrite a run already in --out")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--device", help="where the learner runs: auto, cpu, cuda or cuda:N (default: config)")
    train.add_argument(
        "--ray-address", metavar="ADDRESS|local", help="sample on Ray: a cluster address, or local"
    )
    train.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="adapt a trained policy to held-out tasks", parents=[common])
    ev.add_argument("run", help="run directory or checkpoint file")
    ev.add_argument("--tasks", type=int, default=40, help="held-out tasks (default 40)")
    ev.add_argument("--steps", type=int, default=3, help="adaptation steps (default 3)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the held-out tasks")
    ev.add_argument("--env", help="evaluate on this env id instead of the run's (same spaces)")
    ev.add_argument("--shots", type=int, help="supervised runs: support examples per task (default: k_shot)")
    ev.add_argument("--lr", type=float, help="first adaptation step size (default: the config's)")
    ev.add_argument(
        "--adaptation",
        choices=("sgd", "proximal"),
        help="supervised runs: plain SGD steps, or iMAML's proximal steps (default: as the learner trains)",
    )
    ev.add_argument("--later-lr", type=float, help="later steps' size (default: half of --lr)")
    ev.add_argument("--episodes", type=int, help="episodes per task per step (default: the config's)")
    ev.add_argument(
        "--deterministic",
        action="store_true",
        help="oracle runs: act with PPO's mean action (default: sample, as every method does)",
    )
    ev.add_argument("--checkpoint", choices=("latest", "best"), default="latest")
    ev.add_argument("--device", help="where the adaptation steps run: auto, cpu, cuda or cuda:N")
    ev.add_argument("--json", help="write the results as JSON here")
    ev.add_argument(
        "--set",
        action="append",
        metavar="env_kwargs.KEY=VALUE",
        help="RL runs: an env argument for the held-out tasks in place of the run's "
        "(e.g. env_kwargs.healthy_reward=0.05); the JSON records the env_kwargs used",
    )
    ev.set_defaults(func=_evaluate)

    envs = sub.add_parser("envs", help="list the registered task families", parents=[common])
    envs.set_defaults(func=_envs)

    bl = sub.add_parser("baseline", help="build the random, pretrained or oracle baseline", parents=[common])
    bl.add_argument("kind", nargs="?", choices=("random", "pretrained", "oracle"))
    bl.add_argument("config", nargs="?", help="the experiment config whose family and network to use")
    bl.add_argument("--out", help="run directory (default runs/<config>-<kind>)")
    bl.add_argument("--timesteps", type=int, help="PPO env steps (pretrained, oracle; default 1000000)")
    bl.add_argument("--num-envs", type=int, help="PPO's parallel envs (default: the config's ppo.num_envs)")
    bl.add_argument(
        "--resume",
        metavar="DIR",
        help="continue a pretrained or oracle run: an interrupted one from its last update, a finished "
        "one to a larger --timesteps",
    )
    bl.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    bl.add_argument("--force", action="store_true", help="replace a run already in --out")
    bl.set_defaults(func=_baseline)

    pl = sub.add_parser(
        "plot", help="return vs adaptation steps, and training curves, as a PNG", parents=[common]
    )
    pl.add_argument(
        "inputs", nargs="+", metavar="RUN_OR_JSON", help="evaluate --json files and/or run directories"
    )
    pl.add_argument("--out", required=True, help="the PNG to write")
    pl.add_argument("--title", help="title of the adaptation panel")
    pl.add_argument(
        "--seeds",
        action="store_true",
        help="draw each method (or variant: <method>_<variant>_seed<N>.json) once: mean over its "
        "results (training seeds) ± s.e. across them, and likewise its run directories' training "
        "curves (<method>_seed<N>)",
    )
    pl.set_defaults(func=_plot)

    cmp = sub.add_parser("compare", help="table of methods x adaptation steps", parents=[common])
    cmp.add_argument("results", nargs="+", metavar="JSON", help="evaluate --json files")
    cmp.add_argument(
        "--seeds",
        action="store_true",
        help="also pool each method's (or variant's: <method>_<variant>_seed<N>.json) results as "
        "training seeds: mean ± s.e. across seeds",
    )
    cmp.add_argument(
        "--paper",
        action="store_true",
        help="also score the results against the MAML paper's random and oracle, beside the paper's scores",
    )
    cmp.add_argument(
        "--by-task",
        action="store_true",
        help="also split each result by its held-out tasks' values (families with few, such as cheetah-dir)",
    )
    cmp.set_defaults(func=_compare)

    sm = sub.add_parser(
        "summary",
        help="a run's iterations, best checkpoint, env steps, training time and whether its returns moved",
        parents=[common],
    )
    sm.add_argument("runs", nargs="+", metavar="RUN_DIR", help="meta-training run directories")
    sm.set_defaults(func=_summary)

    bench = sub.add_parser(
        "bench",
        help="benchmarks: sampler throughput, iteration time, what a subsampled TRPO curvature costs, "
        "PPO baselines' throughput",
        parents=[common],
    )
    bench.add_argument("what", choices=("sampler", "iteration", "curvature", "ppo"))
    bench.add_argument("--env", default="metarl/HalfCheetahVel-v0", help="sampler: the family")
    bench.add_argument("--num-envs", type=int, default=800, help="sampler: envs for (a) and (b)")
    bench.add_argument("--async-envs", type=int, default=80, help="sampler: processes for (c)")
    bench.add_argument("--steps", type=int, default=200, help="sampler: steps per env")
    bench.add_argument(
        "--threads", metavar="N,M,...", help="sampler: also time the batched engine at these thread counts"
    )
    bench.add_argument("--rounds", type=int, default=3, help="sampler: best of this many runs per figure")
    bench.add_argument(
        "--backend",
        choices=("cpu", "warp"),
        default="cpu",
        help="sampler: warp also times the MuJoCo Warp sampler (h) on --device (a GPU by default)",
    )
    bench.add_argument("--warp-envs", type=int, help="sampler: worlds for (h) (default --num-envs)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--config", help="iteration, ppo: experiment config")
    bench.add_argument(
        "--iterations", type=int, default=3, help="iteration: timed iterations; ppo: timed rollouts"
    )
    bench.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="iteration, ppo: override (ppo.num_envs=16, ...); curvature: num_threads=N",
    )
    bench.add_argument(
        "--baseline", choices=("oracle", "pretrained"), default="oracle", help="ppo: which PPO baseline"
    )
    bench.add_argument(
        "--device",
        help="iteration, curvature: where the learner runs; sampler --backend warp: where it samples",
    )
    bench.add_argument("--run", help="curvature: a MAML-TRPO run directory or checkpoint, the θ to step from")
    bench.add_argument(
        "--checkpoint", choices=("latest", "best"), default="latest", help="curvature: of --run"
    )
    bench.add_argument(
        "--fractions",
        default="0.1,0.25,1",
        help="curvature: trpo.curvature_tasks values to compare (0.1,0.25,1)",
    )
    bench.add_argument(
        "--batches", type=int, default=3, help="curvature: meta-batches sampled from --run's θ"
    )
    bench.add_argument("--json", help="write the figures as JSON here")
    bench.set_defaults(func=_bench)
    return parser


_VERBOSE = False  # whether the last main() opened metarl's INFO records


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # -v opens metarl's own INFO records only; libraries' (TensorBoard's event reader) stay quiet.
    # Without it, a level set by an earlier -v call in this process is undone, and no other.
    global _VERBOSE
    log = logging.getLogger("metarl")
    if args.verbose:
        log.setLevel(logging.INFO)
    elif _VERBOSE and log.level == logging.INFO:
        log.setLevel(logging.NOTSET)
    _VERBOSE = args.verbose
    import metarl  # noqa: F401  (registers the families before any env id is resolved)

    previous = None
    with contextlib.suppress(ValueError):  # signal handlers only exist in the main thread
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    _ACTIVE.clear()
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe fails here, not after main() where it cannot be caught
        return code
    except TrainingStopped as exc:
        print(f"metarl: stopped: {exc}", file=sys.stderr)
        return EXIT_STOPPED
    except MetarlError as exc:
        print(f"metarl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise
        # As Unix tools do: stop quietly, and keep Python from failing again on the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE if hasattr(signal, "SIGPIPE") else 1
    finally:
        _ACTIVE.clear()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
