"""Print a meta-training run's learning curves as means over blocks of iterations, the form the
README quotes them in: training return before and after adapting, iteration time, and every
validation; ``--tag`` adds any other logged scalar (such as ``sampler/env_steps_per_s``).

    python benchmarks/curve_blocks.py experiments/runs/ant_dir/maml_trpo_seed1 [--block 20] [--tag TAG ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metarl.errors import MetarlError
from metarl.summary import _scalars

BLOCKED = ("return/pre_adaptation", "return/post_adaptation", "time/iteration_s")


def block_means(by_step: dict[int, float], block: int) -> list[tuple[int, int, float]]:
    """(first iteration, last iteration, mean) over consecutive blocks of ``block`` iterations."""
    steps = sorted(by_step)
    out = []
    for i in range(0, len(steps), block):
        part = steps[i : i + block]
        out.append((part[0], part[-1], sum(by_step[s] for s in part) / len(part)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--block", type=int, default=20, help="iterations per block (default 20)")
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        help="another scalar to show as block means (repeatable), e.g. sampler/env_steps",
    )
    args = parser.parse_args()
    if args.block < 1:
        print(f"curve_blocks: --block must be >= 1, got {args.block}", file=sys.stderr)
        return 2
    try:
        scalars = _scalars(args.run_dir)
    except MetarlError as exc:
        print(f"curve_blocks: {exc}", file=sys.stderr)
        return 2
    unknown = [tag for tag in args.tag if tag not in scalars]
    if unknown:
        print(
            f"curve_blocks: no scalar {unknown[0]!r} in {args.run_dir}; logged: {', '.join(sorted(scalars))}",
            file=sys.stderr,
        )
        return 2
    for tag in (*BLOCKED, *(t for t in args.tag if t not in BLOCKED)):
        if tag in scalars:
            blocks = ", ".join(f"{a}-{b}: {m:.1f}" for a, b, m in block_means(scalars[tag], args.block))
            print(f"{tag}\n  {blocks}")
    for tag in sorted(t for t in scalars if t.startswith("validation/")):
        values = ", ".join(f"{s}: {v:.1f}" for s, v in sorted(scalars[tag].items()))
        print(f"{tag}\n  {values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
