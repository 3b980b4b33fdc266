#!/usr/bin/env bash
# Kill a training with SIGKILL mid-run, resume it, and compare the parameter checksum with an
# uninterrupted run of the same config and seed.   usage: bash benchmarks/kill_and_resume.sh [DIR]
set -euo pipefail
dir=${1:-$(mktemp -d)}
mkdir -p "$dir"
export OMP_NUM_THREADS=1
cat > "$dir/cfg.yaml" <<'YAML'
env: metarl/Navigation2D-v0
iterations: 6
meta_batch_size: 10
episodes_per_task: 10
horizon: 100
num_threads: 1
policy: {hidden_sizes: [32, 32]}
YAML
checksum() {
  python - "$1" <<'PY'
import hashlib, sys, torch
s = torch.load(sys.argv[1], weights_only=True)
h = hashlib.sha256(b"".join(v.numpy().tobytes() for v in s["policy"].values())).hexdigest()[:16]
print(f"iteration {s['iteration']}  params sha256 {h}")
PY
}
metarl train "$dir/cfg.yaml" --out "$dir/full" --no-progress --force > /dev/null 2>&1
metarl train "$dir/cfg.yaml" --out "$dir/killed" --no-progress --force > /dev/null 2>&1 &
pid=$!
until [ -f "$dir/killed/checkpoint.pt" ] && python -c "import torch,sys; sys.exit(torch.load('$dir/killed/checkpoint.pt', weights_only=True)['iteration'] < 3)" 2> /dev/null; do sleep 0.2; done
sleep 0.5
kill -9 "$pid"; wait "$pid" 2> /dev/null || true
echo "killed with SIGKILL:  $(checksum "$dir/killed/checkpoint.pt")"
metarl train --resume "$dir/killed" --no-progress > /dev/null 2>&1
echo "resumed:              $(checksum "$dir/killed/checkpoint.pt")"
echo "uninterrupted:        $(checksum "$dir/full/checkpoint.pt")"
