"""Benchmarks: sampler throughput against Gymnasium's vector envs and the physics limit, and
where the time of a meta-iteration goes. They print figures; they are not tests.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch
from metarl_envs.batched import usable_cores

from metarl.config import load_config
from metarl.errors import MetarlError
from metarl.policies import GaussianMLPPolicy
from metarl.sampling.local import Sampler, make_vector_env, policy_threads
from metarl.tasks import resolve_env_id, set_tasks, task_api

# MjData fields that make up the state a step starts from (mjSTATE_INTEGRATION minus the rarely
# used applied forces and mocap), recorded from the batched run and replayed on one thread.
_STATE_FIELDS = ("qpos", "qvel", "act", "qacc_warmstart", "ctrl")


class _StateRecorder:
    """Copies the state of every sub-env before every step of a batched run (with the control
    the step applies). (d) replays a fixed sample of them one by one; (e) replays them all."""

    def __init__(self, env: Any, sample: int = 64) -> None:
        self.ids = np.unique(np.linspace(0, env.num_envs - 1, min(sample, env.num_envs)).astype(int))
        self.fields = {f: env.batch.bind(f) for f in _STATE_FIELDS if env.batch.bind(f).shape[1] > 0}
        self.steps: list[dict[str, np.ndarray]] = []

    def before_step(self, actions: np.ndarray) -> None:
        self.steps.append(
            {f: actions.copy() if f == "ctrl" else arr.copy() for f, arr in self.fields.items()}
        )

    def stacked(self) -> dict[str, np.ndarray]:
        """The sampled sub-envs' states, all steps stacked: (steps × sample, ...) per field."""
        return {f: np.concatenate([step[f][self.ids] for step in self.steps]) for f in self.fields}


def _throughput(
    env: gym.vector.VectorEnv,
    env_id: str,
    policy: GaussianMLPPolicy,
    steps: int,
    seed: int,
    recorder: _StateRecorder | None = None,
) -> float:
    """Env-steps/s of ``env`` with ``policy`` choosing every action (autoresets included)."""
    n = env.num_envs
    tasks = task_api(env, env_id).sample_tasks(n, np.random.default_rng(seed))
    set_tasks(env, tasks)
    obs, _ = env.reset(seed=seed)
    params = {k: v.detach() for k, v in policy.params().items()}
    generator = torch.Generator().manual_seed(seed)
    with policy_threads(env):
        start = time.perf_counter()
        for _ in range(steps):
            o = torch.as_tensor(np.asarray(obs, dtype=np.float32))
            actions = policy.sample(params, o, generator=generator).numpy().astype(np.float64)
            if recorder is not None:
                space = env.single_action_space
                recorder.before_step(np.clip(actions, space.low, space.high))
            obs, *_ = env.step(actions)
        return n * steps / (time.perf_counter() - start)


def _physics_alone(env: Any, recorder: _StateRecorder) -> float:
    """Env-steps/s of the batched engine's ``Batch.step`` alone, from the very states of run
    (a) (every sub-env's state and control loaded before each step, so resets and falls are
    replayed too): the same physics and threads, without the policy, NumPy or Python."""
    start = time.perf_counter()
    for state in recorder.steps:
        for f, arr in recorder.fields.items():
            arr[:] = state[f]
        env.batch.step(nstep=env.frame_skip)
    return env.num_envs * len(recorder.steps) / (time.perf_counter() - start)


def mj_step_seconds(model: mujoco.MjModel, states: dict[str, np.ndarray], repeats: int = 3) -> float:
    """The time of one ``mj_step`` on one thread, averaged over ``states`` (best of ``repeats``).

    Every state is loaded into one ``MjData`` and stepped once; the time of loading alone is
    measured the same way and subtracted, so the figure is the physics and nothing else.
    """
    data = mujoco.MjData(model)
    count = len(next(iter(states.values())))
    rows = [[(getattr(data, f), v[i]) for f, v in states.items()] for i in range(count)]

    def run(step: bool) -> float:
        start = time.perf_counter()
        for row in rows:
            for dst, src in row:
                dst[:] = src
            if step:
                mujoco.mj_step(model, data)
        return time.perf_counter() - start

    best = float("inf")
    for _ in range(repeats):
        best = min(best, run(True) - run(False))
    return best / count


def bench_sampler(
    env_id: str = "metarl/HalfCheetahVel-v0",
    num_envs: int = 800,
    steps: int = 200,
    async_envs: int = 80,
    seed: int = 0,
    threads: list[int] | None = None,
    rounds: int = 3,
    backend: str = "cpu",
    warp_envs: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Env-steps/s of (a) the family's batched engine, (b) SyncVectorEnv, (c) AsyncVectorEnv
    with one process per env (``async_envs`` of them), and (d) the physics limit: the usable
    cores divided by the single-thread cost of one env step (``frame_skip`` × ``mj_step``),
    measured on a sample of the very states the batched run stepped through. With
    ``backend="warp"`` also (h): metarl's MuJoCo Warp sampler on ``device`` (a GPU by default)
    with ``warp_envs`` worlds (default ``num_envs``), the policy acting on that device.

    Each figure is the best of ``rounds`` runs of ``steps`` steps from the same reset, so
    that a noisy machine slows no backend more than another; ``threads`` also times the
    batched engine at each of those thread counts (scaling).

    A part that fails (say AsyncVectorEnv's fork running out of memory after (a) and (b) ran)
    does not lose the others: ``results["failed"]`` maps its name to the error, the figures
    that need it are left out, and the rest are measured and returned.
    """
    spec = resolve_env_id(env_id)
    single = gym.make(env_id).unwrapped
    is_mujoco = hasattr(single, "model") and hasattr(single, "frame_skip")
    if spec.vector_entry_point is None or not is_mujoco:
        single.close()
        raise MetarlError(
            f"bench sampler measures a batched MuJoCo engine; {env_id!r} has none "
            "(try metarl/HalfCheetahVel-v0 or metarl/HalfCheetahDir-v0)"
        )
    model, frame_skip = single.model, single.frame_skip
    obs_dim, act_dim = single.observation_space.shape[0], single.action_space.shape[0]
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(obs_dim, act_dim, (100, 100))
    cores = usable_cores()
    results: dict[str, Any] = {"env_id": env_id, "num_envs": num_envs, "steps": steps, "cores": cores}
    horizon = spec.max_episode_steps or 1000

    results["async_envs"] = async_envs
    results["rounds"] = rounds
    results["frame_skip"] = frame_skip
    results["threads"] = {}
    results["failed"] = {}

    def attempt(part: str, measure: Any, *args: Any) -> None:
        """Run one part; a failure is recorded under its name, and the next part runs."""
        try:
            measure(*args)
        except MetarlError:
            raise
        except Exception as exc:  # out of memory, a fork that failed, a worker that died, ...
            message = " ".join(str(exc).split())
            results["failed"][part] = f"{type(exc).__name__}: {message}" if message else type(exc).__name__

    recorder: _StateRecorder | None = None

    def run(key: str, backend: str, n: int, num_threads: int = 0) -> None:
        nonlocal recorder
        env = make_vector_env(env_id, n, horizon=horizon, backend=backend, num_threads=num_threads)
        try:
            _throughput(env, env_id, policy, min(steps, 5), seed)  # warm-up
            record = _StateRecorder(env) if key == "batched" and not num_threads else None
            best = max(
                _throughput(env, env_id, policy, steps, seed, record if r == 0 else None)
                for r in range(rounds)
            )
            if num_threads:
                results["threads"][num_threads] = best
                return
            results[f"{key}_steps_per_s"] = best
            if record is not None:
                results["physics_alone_steps_per_s"] = max(_physics_alone(env, record) for _ in range(rounds))
                recorder = record
        finally:
            env.close()

    # (c) first: its workers are forked from this process, which is small before (a) and (b)
    # have held num_envs envs (a large parent is what makes a fork fail with ENOMEM).
    with_warp = backend == "warp"
    for key, mode, n in [
        ("async", "async", async_envs),
        ("batched", "vector_entry_point", num_envs),
        ("sync", "sync", num_envs),
    ]:
        attempt(_PART_NAMES[key].format(**results), run, key, mode, n)
    for k in threads or []:
        attempt(f"batched engine, {k} thread(s)", run, "batched", "vector_entry_point", num_envs, k)

    def physics_limit() -> None:
        assert recorder is not None
        step_s = mj_step_seconds(model, recorder.stacked(), repeats=rounds)
        results["mj_step_us"] = step_s * 1e6
        results["mj_step_states"] = len(recorder.ids) * steps
        results["physics_limit_steps_per_s"] = cores / (frame_skip * step_s)

    if recorder is not None:  # (d) is timed on the states of (a)
        attempt("(d) physics limit", physics_limit)

    def sampler(key: str, groups: int) -> None:
        """metarl's Sampler itself (per-task policy blocks, episode buffers), one group or
        ``groups`` pipelined: one group's physics runs while the policy acts for the next."""
        E = _episodes_per_task(num_envs)
        sampler = Sampler(env_id, num_envs // E, E, steps, backend="vector_entry_point", groups=groups)
        try:
            results[f"{key}_steps_per_s"] = _sampler_throughput(sampler, policy, rounds, seed)
            results[f"{key}_groups"] = len(getattr(sampler.env, "groups", [sampler.env]))
        finally:
            sampler.close()

    attempt(_PART_NAMES["sampler"].format(**results), sampler, "sampler", 1)
    attempt(_PART_NAMES["pipelined"].format(**results), sampler, "pipelined", 2)
    if with_warp:
        results["warp_envs"] = warp_envs or num_envs
        attempt(
            _PART_NAMES["warp"].format(**results), _bench_warp, results, env_id, policy, steps, rounds, device
        )
    single.close()
    for name, num, den in [
        ("batched_over_limit", "batched", "physics_limit"),
        ("batched_over_physics_alone", "batched", "physics_alone"),
        ("physics_alone_over_limit", "physics_alone", "physics_limit"),
        ("batched_over_sync", "batched", "sync"),
        ("batched_over_async", "batched", "async"),
        ("sampler_over_limit", "sampler", "physics_limit"),
        ("pipelined_over_limit", "pipelined", "physics_limit"),
        ("pipelined_over_sampler", "pipelined", "sampler"),
        ("warp_over_sampler", "warp", "sampler"),
        ("warp_over_limit", "warp", "physics_limit"),
    ]:
        if f"{num}_steps_per_s" in results and f"{den}_steps_per_s" in results:
            results[name] = results[f"{num}_steps_per_s"] / results[f"{den}_steps_per_s"]
    return results


def _episodes_per_task(num_envs: int) -> int:
    """The benchmarks' split of ``num_envs`` sub-envs: tasks of 20 episodes where it divides."""
    return 20 if num_envs % 20 == 0 else 1


def _sampler_throughput(sampler: Any, policy: GaussianMLPPolicy, rounds: int, seed: int) -> float:
    """Env-steps/s of a metarl sampler with ``policy`` in the loop, best of ``rounds`` calls after
    a warm-up (kernels compiled, a CUDA graph captured). Steps of ended episodes count too, as
    in (a); on a GPU each call ends with the device idle."""
    sampler.set_tasks(sampler.sample_tasks(sampler.num_tasks, np.random.default_rng(seed)))
    device = getattr(sampler, "device", torch.device("cpu"))
    best = 0.0
    for r in range(rounds + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        episodes = sampler.sample(
            policy, policy.params(), np.random.default_rng(r), torch.Generator().manual_seed(r)
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if r:
            simulated = episodes.obs.shape[0] * sampler.num_tasks * sampler.episodes_per_task
            best = max(best, simulated / (time.perf_counter() - start))
    return best


def _bench_warp(
    results: dict[str, Any], env_id: str, policy: GaussianMLPPolicy, steps: int, rounds: int, device: str
) -> None:
    """(h): :class:`~metarl.sampling.warp.WarpSampler` with ``results["warp_envs"]`` worlds, the
    policy on the sampler's device; every figure ends with the device idle (synchronized)."""
    from metarl.device import describe, resolve_device
    from metarl.sampling.warp import WarpSampler

    n = results["warp_envs"]
    E = _episodes_per_task(n)
    sampler = WarpSampler(env_id, n // E, E, steps, device=resolve_device(device))
    results["warp_device"] = describe(sampler.device)
    try:
        on_device = copy.deepcopy(policy).to(sampler.device)
        results["warp_steps_per_s"] = _sampler_throughput(sampler, on_device, rounds, 0)
    finally:
        sampler.close()


_PART_NAMES = {
    "batched": "(a) batched engine, {num_envs} envs",
    "sync": "(b) SyncVectorEnv, {num_envs} envs",
    "async": "(c) AsyncVectorEnv, {async_envs} processes",
    "sampler": "(f) metarl's Sampler, {num_envs} envs",
    "pipelined": "(g) metarl's Sampler, {num_envs} envs in 2 pipelined groups",
    "warp": "(h) metarl's MuJoCo Warp sampler, {warp_envs} worlds",
}


def failure_line(r: dict[str, Any]) -> str:
    """One line naming the parts of a benchmark that failed, and why."""
    failed = "; ".join(f"{part} failed: {error}" for part, error in r.get("failed", {}).items())
    return f"bench: {failed} (the figures that were measured are printed above)"


def format_sampler(r: dict[str, Any]) -> str:
    """The figures of :func:`bench_sampler`; a part that failed shows as ``failed`` (its error
    is in ``r["failed"]``) and the figures and ratios that need it are left out."""
    failed = r.get("failed", {})
    mj_step = f"{r['mj_step_us']:.2f} us" if "mj_step_us" in r else "?"
    rows = [
        (_PART_NAMES["batched"].format(**r), r.get("batched_steps_per_s")),
        (_PART_NAMES["sync"].format(**r), r.get("sync_steps_per_s")),
        (_PART_NAMES["async"].format(**r), r.get("async_steps_per_s")),
        (
            f"(d) physics limit: {r['cores']} cores / ({r['frame_skip']} x {mj_step})",
            r.get("physics_limit_steps_per_s"),
        ),
        (f"(e) Batch.step alone, {r['num_envs']} envs, recorded states", r.get("physics_alone_steps_per_s")),
        (_PART_NAMES["sampler"].format(**r), r.get("sampler_steps_per_s")),
        (_PART_NAMES["pipelined"].format(**r), r.get("pipelined_steps_per_s")),
    ]
    if "warp_envs" in r:
        where = f" on {r['warp_device']}" if "warp_device" in r else ""
        rows.append((_PART_NAMES["warp"].format(**r) + where, r.get("warp_steps_per_s")))
    rows += [(f"    batched engine, {k} thread(s)", v) for k, v in r.get("threads", {}).items()]
    rows += [(f"    {part}", None) for part in failed if part.startswith("batched engine, ")]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"{r['env_id']}, MLP policy in the loop, {r['steps']} steps per env, best of {r['rounds']} rounds; "
        f"{r['cores']} usable cores, the engine on {r['cores']} thread(s), the policy on 1 torch thread, "
        "on the CPU"
    ]
    for name, value in rows:
        if value is not None:
            lines.append(f"{name:<{width}}  {value:>10,.0f} env-steps/s")
        else:
            why = "failed" if any(name.strip().startswith(part) for part in failed) else "not measured"
            lines.append(f"{name:<{width}}  {why:>10}")
    if "mj_step_states" in r:
        lines.append(f"mj_step measured on one thread over {r['mj_step_states']:,} states of the batched run")
    ratios = [
        ("a/d = {:.2f}", "batched_over_limit"),
        ("a/b = {:.1f}x", "batched_over_sync"),
        ("a/c = {:.1f}x", "batched_over_async"),
    ]
    shown = [fmt.format(r[key]) for fmt, key in ratios if key in r]
    notes = [
        ("a/e = {:.2f}: the policy and NumPy around the physics", "batched_over_physics_alone"),
        ("e/d = {:.2f}: how the physics scales over the cores", "physics_alone_over_limit"),
    ]
    noted = [fmt.format(r[key]) for fmt, key in notes if key in r]
    if shown or noted:
        lines.append("   ".join(shown) + (f"   ({'; '.join(noted)})" if noted else ""))
    pipeline = [
        ("f/d = {:.2f}", "sampler_over_limit"),
        ("g/d = {:.2f}", "pipelined_over_limit"),
        ("g/f = {:.2f}: what pipelining gains", "pipelined_over_sampler"),
    ]
    if any(key in r for _, key in pipeline):
        lines.append("   ".join(fmt.format(r[key]) for fmt, key in pipeline if key in r))
    warp = [("h/f = {:.2f}x", "warp_over_sampler"), ("h/d = {:.2f}x", "warp_over_limit")]
    if any(key in r for _, key in warp):
        lines.append("   ".join(fmt.format(r[key]) for fmt, key in warp if key in r))
    return "\n".join(lines)


def bench_iteration(
    config_path: str, iterations: int = 3, overrides: list[str] | None = None, device: str | None = None
) -> dict[str, Any]:
    """Seconds per meta-iteration spent sampling, adapting (baseline fits and inner steps) and in
    the meta-step, averaged over ``iterations`` after one warm-up iteration. ``device`` overrides
    the config's; the result records the device, the thread counts and the curvature used, so
    that a figure can be reproduced from it."""
    from metarl.config import curvature_fraction
    from metarl.device import describe
    from metarl.learners.registry import kind_of
    from metarl.trainer import learner_from_config

    if iterations < 1:
        raise MetarlError(f"--iterations: got {iterations}, expected a positive integer")
    config = load_config(
        config_path, ["iterations=1", *(overrides or []), *([f"device={device}"] if device else [])]
    )
    if kind_of(config.env) != "rl":
        raise MetarlError(f"bench iteration times RL sampling and meta-steps; {config.env!r} is supervised")
    with learner_from_config(config) as algo:
        trainer = algo
        algo.train_iteration(trainer.rng, trainer.generator)  # warm-up
        totals = {"sampling": 0.0, "adaptation": 0.0, "meta_step": 0.0, "iteration": 0.0}
        env_steps = 0.0
        for _ in range(iterations):
            start = time.perf_counter()
            m = algo.train_iteration(trainer.rng, trainer.generator)
            totals["iteration"] += time.perf_counter() - start
            totals["sampling"] += m["time/sampling_s"]
            totals["adaptation"] += m["time/adaptation_s"]
            totals["meta_step"] += m["time/meta_step_s"]
            env_steps += m["sampler/env_steps"]
        where = describe(trainer.device)
        trpo = config.algorithm == "maml_trpo" or (
            config.algorithm == "fomaml" and config.outer.optimizer == "trpo"
        )
        curvature = curvature_fraction(config, trainer.device.type) if trpo else None
        sampler_threads = getattr(trainer.sampler.env, "num_threads", 1)
        sampler_backend = trainer.sampler.backend
    per_iter = {k: v / iterations for k, v in totals.items()}
    return {
        "config": config_path,
        "env_id": config.env,
        "meta_batch_size": config.meta_batch_size,
        "episodes_per_task": config.episodes_per_task,
        "horizon": config.horizon,
        "iterations": iterations,
        "algorithm": config.algorithm,
        "device": where,
        "torch_threads": torch.get_num_threads(),
        "sampler_backend": sampler_backend,
        "sampler_threads": sampler_threads,
        "curvature_tasks": curvature,
        "seconds_per_iteration": per_iter,
        "shares": {k: per_iter[k] / per_iter["iteration"] for k in ("sampling", "adaptation", "meta_step")},
        "env_steps_per_iteration": env_steps / iterations,
        "sampling_steps_per_s": env_steps / max(totals["sampling"], 1e-9),
    }


def _curvature(r: dict[str, Any]) -> str:
    fraction = r.get("curvature_tasks")
    if fraction is None:
        return "none (no TRPO step)"
    if fraction >= 1.0:
        return "exact (KL Hessian over every task)"
    n = max(1, round(fraction * r["meta_batch_size"]))
    return f"approximate (KL Hessian over {n} of {r['meta_batch_size']} tasks)"


def format_iteration(r: dict[str, Any]) -> str:
    s, sh = r["seconds_per_iteration"], r["shares"]
    other = s["iteration"] - s["sampling"] - s["adaptation"] - s["meta_step"]
    return "\n".join(
        [
            f"{r['env_id']}: {r['meta_batch_size']} tasks x {r['episodes_per_task']} episodes x "
            f"{r['horizon']} steps, mean of {r['iterations']} iterations",
            f"{r['algorithm']} on {r['device']}; sampler {r['sampler_backend']} on "
            f"{r['sampler_threads']} thread(s); curvature: {_curvature(r)}",
            f"sampling     {s['sampling']:8.2f} s  {sh['sampling']:6.1%}  "
            f"({r['sampling_steps_per_s']:,.0f} env-steps/s)",
            f"adaptation   {s['adaptation']:8.2f} s  {sh['adaptation']:6.1%}",
            f"meta-step    {s['meta_step']:8.2f} s  {sh['meta_step']:6.1%}",
            f"other        {other:8.2f} s",
            f"iteration    {s['iteration']:8.2f} s  (not sampling: {1 - sh['sampling']:.1%})",
        ]
    )


def bench_curvature(
    path: str,
    fractions: list[float],
    batches: int = 3,
    seed: int = 0,
    which: str = "latest",
    overrides: list[str] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """What the subsampled KL Hessian (``trpo.curvature_tasks``) costs and gives up, at the θ
    of a trained MAML-TRPO checkpoint: on each of ``batches`` meta-batches, one TRPO step from
    that θ per fraction, recording the surrogate gain, the KL, the line-search evaluations, the
    meta-step's seconds and the step's cosine with the largest fraction's step (means over the
    batches; the cosine over accepted steps only). Which fraction pays depends on how far
    training is, so give the checkpoint of the stage that matters."""
    from metarl.learners.base import load
    from metarl.learners.maml_trpo import MAMLTRPO
    from metarl.optim.trpo import flat

    if batches < 1:
        raise MetarlError(f"--batches: got {batches}, expected a positive integer")
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise MetarlError(f"--fractions: got {fractions}, expected numbers in (0, 1]")
    learner = load(path, device=device, which=which, overrides=overrides)
    with learner:
        trpo = isinstance(learner, MAMLTRPO) and getattr(learner, "optimizer", None) is None
        if not trpo:
            raise MetarlError(
                f"bench curvature needs a MAML-TRPO checkpoint (or FOMAML with outer.optimizer trpo); "
                f"{path!r} holds {learner.config.algorithm}"
            )
        config = learner.config
        theta = copy.deepcopy(learner.policy.state_dict())
        fractions = sorted(set(fractions))
        rows: dict[float, list[dict[str, float]]] = {f: [] for f in fractions}
        rng = np.random.default_rng(seed)
        generator = torch.Generator(device=learner.generator.device).manual_seed(seed)
        for b in range(batches):
            tasks = learner.sampler.sample_tasks(config.meta_batch_size, rng)
            inner, valid, adapted, _ = learner.sample_inner_loop(tasks, rng, generator)
            steps = {}
            for f in fractions:
                learner.policy.load_state_dict(theta)
                before = flat([p.detach() for p in learner.policy.parameters()]).clone()
                start = time.perf_counter()
                result, n = learner.trpo_meta_step(inner, valid, adapted, f, np.random.default_rng([seed, b]))
                seconds = time.perf_counter() - start
                steps[f] = flat([p.detach() for p in learner.policy.parameters()]) - before
                rows[f].append(
                    {
                        "tasks": n,
                        "gain": result.loss_before - result.loss_after,
                        "kl": result.kl,
                        "line_search_evals": result.ls_steps,
                        "accepted": float(result.accepted),
                        "seconds": seconds,
                    }
                )
            reference = steps[fractions[-1]]
            for f in fractions:
                norms = steps[f].norm() * reference.norm()
                cosine = float(steps[f] @ reference / norms) if norms > 0 else float("nan")
                rows[f][-1]["cosine"] = cosine
        learner.policy.load_state_dict(theta)
        iteration = learner.iteration
    summary = {}
    for f in fractions:
        # a rejected step has no direction: its cosine is NaN and left out of the mean
        summary[str(f)] = {
            k: float(np.mean(v)) if (v := [r[k] for r in rows[f] if np.isfinite(r[k])]) else float("nan")
            for k in rows[f][0]
        }
    top = summary[str(fractions[-1])]["gain"]
    for f in fractions:
        summary[str(f)]["gain_ratio"] = summary[str(f)]["gain"] / top if top > 0 else float("nan")
    return {
        "checkpoint": path,
        "which": which,
        "iteration": iteration,
        "env_id": config.env,
        "meta_batch_size": config.meta_batch_size,
        "episodes_per_task": config.episodes_per_task,
        "horizon": config.horizon,
        "batches": batches,
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
        "reference": fractions[-1],
        "fractions": summary,
        "per_batch": {str(f): rows[f] for f in fractions},
    }


def format_curvature(r: dict[str, Any]) -> str:
    """The table of :func:`bench_curvature`: one row per fraction, means over the batches."""
    ref = r["reference"]
    lines = [
        f"{r['env_id']} at iteration {r['iteration']} ({r['checkpoint']}, {r['which']}): "
        f"{r['batches']} batches of {r['meta_batch_size']} tasks x {r['episodes_per_task']} episodes x "
        f"{r['horizon']} steps, one TRPO step from the same θ per fraction",
        f"{'curvature':>9}  {'tasks':>5}  {'surrogate gain':>14}  {f'gain / {ref:g}':>10}  "
        f"{'line-search evals':>17}  {'KL':>7}  {f'cosine to {ref:g}':>12}  {'accepted':>8}  "
        f"{'meta-step':>9}",
    ]
    for f, s in r["fractions"].items():
        lines.append(
            f"{float(f):>9g}  {s['tasks']:>5.0f}  {s['gain']:>14.5f}  {s['gain_ratio']:>10.2f}  "
            f"{s['line_search_evals']:>17.1f}  {s['kl']:>7.4f}  {s['cosine']:>12.2f}  {s['accepted']:>8.0%}  "
            f"{s['seconds']:>7.1f} s"
        )
    return "\n".join(lines)


def bench_ppo(
    config_path: str, updates: int = 3, overrides: list[str] | None = None, oracle: bool = True
) -> dict[str, Any]:
    """Seconds per PPO rollout spent collecting episodes and updating, for the config's ``ppo``
    settings (what ``metarl baseline`` trains with), averaged over ``updates`` rollouts after a
    warm-up one; nothing is written. The oracle's observations (with the task) by default."""
    from metarl.learners.registry import kind_of
    from metarl.reference_methods import train_ppo

    if updates < 1:
        raise MetarlError(f"--iterations: got {updates}, expected a positive integer")
    config = load_config(config_path, list(overrides or []))
    if kind_of(config.env) != "rl":
        raise MetarlError(f"bench ppo times the PPO baselines of RL families; {config.env!r} is supervised")
    ppo = config.ppo
    rollout = ppo.n_steps * ppo.num_envs
    marks: list[tuple[str, float]] = []
    train_ppo(config, oracle, (updates + 1) * rollout, seed=config.seed, timings=marks)
    times = [t for _, t in marks]
    kinds = [k for k, _ in marks]
    collect = [times[i + 1] - times[i] for i, k in enumerate(kinds) if k == "rollout"][1:]
    update = [times[i + 1] - times[i] for i, k in enumerate(kinds) if k == "update"][1:]
    per_rollout = (sum(collect) + sum(update)) / updates
    return {
        "config": config_path,
        "env_id": config.env,
        "oracle": oracle,
        "ppo": dataclasses.asdict(ppo),
        "rollout_env_steps": rollout,
        "updates": updates,
        "torch_threads": torch.get_num_threads(),
        "collect_s": sum(collect) / updates,
        "update_s": sum(update) / updates,
        "env_steps_per_s": rollout / per_rollout,
        "collect_env_steps_per_s": rollout * updates / max(sum(collect), 1e-9),
    }


def format_ppo(r: dict[str, Any]) -> str:
    p = r["ppo"]
    minibatches = -(-r["rollout_env_steps"] // p["batch_size"])
    normalized = [
        what
        for what, key in (("observations", "normalize_observations"), ("rewards", "normalize_rewards"))
        if p[key]
    ]
    return "\n".join(
        [
            f"{r['env_id']}: {'oracle' if r['oracle'] else 'pretrained'} PPO, {p['num_envs']} envs "
            f"({p['vec_env']}), rollouts of {r['rollout_env_steps']:,} env steps, mean of {r['updates']} "
            f"after a warm-up; {r['torch_threads']} torch thread(s)"
            + (f"; normalized {' and '.join(normalized)}" if normalized else ""),
            f"collecting  {r['collect_s']:8.2f} s  ({r['collect_env_steps_per_s']:,.0f} env-steps/s)",
            f"updating    {r['update_s']:8.2f} s  ({p['n_epochs']} epochs x {minibatches} minibatches of "
            f"{p['batch_size']})",
            f"overall     {r['env_steps_per_s']:,.0f} env-steps/s",
        ]
    )
