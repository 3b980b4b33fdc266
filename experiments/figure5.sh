#!/usr/bin/env bash
# Reproduce one task of the MAML paper's Figure 5 (Finn et al. 2017): meta-train MAML-TRPO (and
# any other learners named in LEARNERS) from every training seed in SEEDS, build the random,
# pretrained and oracle baselines, evaluate everything on the same 40 held-out tasks after 0-3
# adaptation steps, and write the JSONs, the comparison tables (per run, each method's mean
# ± standard error across seeds, both against the paper's random and oracle, and for the
# direction tasks the returns per direction), the figure and the first seed's best
# checkpoints to experiments/results/<task>/.
#
#   bash experiments/figure5.sh halfcheetah_vel                 # the paper's 500 iterations, seeds 0 1 2
#   SEEDS="0 1 2 3 4" LEARNERS="maml_trpo fomaml promp" bash experiments/figure5.sh navigation_2d
#   ITERATIONS=200 PPO_STEPS=1000000 bash experiments/figure5.sh halfcheetah_dir
#   ITERATIONS=1000 bash experiments/figure5.sh halfcheetah_vel  # later: the same runs, extended
#
# Every stage is skipped when its output exists (an evaluation when its JSON scored the very
# checkpoint file there now), a stopped meta-training run is continued with --resume (to ITERATIONS,
# so a larger ITERATIONS extends finished runs), and so is a stopped PPO baseline (from its last
# update), so the script can be interrupted and run again. The run directories go to experiments/runs/<task>/, inside the
# repository, so that they can be committed with the results: their TensorBoard curves are then
# published, and a stopped run continues from any clone. RUNS and RESULTS move the run
# directories and the outputs; TASKS sets the number of held-out tasks (default 40). EXTRA holds
# --set overrides for the learners (for example EXTRA="--set trpo.curvature_tasks=0.25").
# VARIANT names a setting other than the config's, reported beside it: its runs and JSONs are
# LEARNER_VARIANT_seedN, compare.txt pools them on their own row, and the figure and LEARNER.pt
# stay the config's runs'. The paper's settings where a config is tuned:
#   VARIANT=lr0.1 EXTRA="--set inner.lr=0.1" bash experiments/figure5.sh halfcheetah_dir
#   VARIANT=bonus0.05 EXTRA="--set env_kwargs.healthy_reward=0.05" bash experiments/figure5.sh ant_dir
#
# JOBS=N trains and scores up to N seeds of a learner at once, each output line prefixed with its
# learner and seed; the script stops with an error after the batch if any seed failed. On a GPU
# run them under CUDA's Multi-Process Service (see the README's "Sampling on the GPU"); on the
# CPU give each its share of the cores, e.g. JOBS=2 EXTRA="--set num_threads=1 --set
# sampler.num_threads=1" on 2 cores (a resumed run keeps the settings it was started with).
#   JOBS=2 bash experiments/figure5.sh ant_dir
set -euo pipefail

task=${1:?usage: bash experiments/figure5.sh TASK (the name of a config in experiments/)}
config=experiments/$task.yaml
[[ -f $config ]] || { echo "no config $config" >&2; exit 2; }
iterations=${ITERATIONS:-500}
ppo_steps=${PPO_STEPS:-1000000}
tasks=${TASKS:-40}  # held-out tasks; the paper's protocol uses 40
learners=${LEARNERS:-maml_trpo}
read -r -a seeds <<<"${SEEDS:-0 1 2}"
runs=${RUNS:-experiments/runs}/$task
results=${RESULTS:-experiments/results/$task}
read -r -a extra <<<"${EXTRA:-}"
jobs=${JOBS:-1}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a whole number >= 1, got '$jobs'" >&2; exit 2; }
variant=${VARIANT:-}
[[ $variant =~ ^[A-Za-z0-9.-]*$ ]] ||
    { echo "VARIANT must be letters, digits, '.' or '-', got '$variant'" >&2; exit 2; }
mkdir -p "$runs" "$results"

current() {  # JSON CHECKPOINT: true when JSON scored this very checkpoint file on $tasks tasks
    [[ -f $1 ]] || return 1
    # evaluate --json records the file's SHA-256 (file times do not survive a clone), and that of
    # a PPO baseline's ppo.zip beside it; a JSON written before it did is current when it is newer
    # than those files. Anything unreadable is not current: the evaluation runs again and says why.
    python3 - "$1" "$2" "$tasks" <<'EOF' 2>/dev/null
import hashlib, json, os, sys
def same(record, path):
    if record is None:
        return os.path.getmtime(sys.argv[1]) > os.path.getmtime(path)
    return record["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
try:
    result = json.load(open(sys.argv[1]))
    checkpoint = result.get("checkpoint")
    ppo = os.path.join(os.path.dirname(sys.argv[2]), "ppo.zip")
    if result["num_tasks"] != int(sys.argv[3]) or not same(checkpoint, sys.argv[2]):
        sys.exit(1)
    if checkpoint and checkpoint.get("ppo") and not os.path.isfile(ppo):
        sys.exit(1)  # the ppo.zip it scored is gone
    sys.exit(os.path.basename(sys.argv[2]) == "checkpoint.pt" and os.path.isfile(ppo)
             and not same(checkpoint and checkpoint.get("ppo"), ppo))
except Exception:
    sys.exit(1)
EOF
}

train_and_score() {  # LEARNER_CONFIG LEARNER SEED: meta-train one seed (or continue it), score its best.pt
    local learner_config=$1 learner=$2 seed=$3
    local name=${learner}${variant:+_$variant}_seed$seed
    local run=$runs/$name json=$results/$name.json
    if [[ -f $run/checkpoint.pt ]]; then
        metarl train --resume "$run" --set "iterations=$iterations" --no-progress
    else
        metarl train "$learner_config" --out "$run" --seed "$seed" --set "iterations=$iterations" \
            "${extra[@]}" --no-progress
    fi
    # Re-scored only when best.pt is not the file its JSON scored (a resumed run may have a new best).
    current "$json" "$run/best.pt" ||
        metarl evaluate "$run" --checkpoint best --tasks "$tasks" --steps 3 --json "$json"
}

prefixed() {  # TAG: copy stdin to stdout, each line starting with [TAG]
    local line
    while IFS= read -r line || [[ -n $line ]]; do printf '[%s] %s\n' "$1" "$line"; done
}

for learner in $learners; do
    # Each learner takes only its own keys: maml_trpo uses TASK.yaml, the others TASK_LEARNER.yaml.
    learner_config=$config
    [[ $learner == maml_trpo ]] || learner_config=experiments/${task}_$learner.yaml
    [[ -f $learner_config ]] || { echo "no config $learner_config for $learner" >&2; exit 2; }
    if ((jobs == 1)); then
        for seed in "${seeds[@]}"; do train_and_score "$learner_config" "$learner" "$seed"; done
    else
        pids=() tags=() failed=() next=0
        for seed in "${seeds[@]}"; do
            if ((${#pids[@]} - next >= jobs)); then  # a free slot: wait for the oldest seed
                wait "${pids[next]}" || failed+=("${tags[next]}")
                next=$((next + 1))
            fi
            tags+=("$learner seed $seed")
            { train_and_score "$learner_config" "$learner" "$seed" 2>&1 | prefixed "${tags[-1]}"; } &
            pids+=($!)
        done
        for ((; next < ${#pids[@]}; next++)); do wait "${pids[next]}" || failed+=("${tags[next]}"); done
        if ((${#failed[@]})); then
            echo "figure5.sh: failed: $(IFS=,; echo "${failed[*]}") (see the lines tagged with it)" >&2
            exit 1
        fi
    fi
    # The first seed's θ, so that anyone can re-score it without retraining (the config's runs').
    [[ -n $variant ]] || cp "$runs/${learner}_seed${seeds[0]}/best.pt" "$results/${learner/maml_trpo/maml}.pt"
done

for kind in random pretrained oracle; do
    run=$runs/$kind
    if [[ -f $run/ppo-resume.pt && ! -f $run/checkpoint.pt ]]; then  # an interrupted PPO run
        metarl baseline --resume "$run"
    elif [[ ! -f $run/checkpoint.pt ]]; then
        metarl baseline "$kind" "$config" --out "$run" --timesteps "$ppo_steps"
    fi
    current "$results/$kind.json" "$run/checkpoint.pt" ||
        metarl evaluate "$run" --tasks "$tasks" --steps 3 --json "$results/$kind.json"
done

flags=()  # the tasks of the paper's Figure 5 also get scores against its random and oracle
case $task in halfcheetah_vel | halfcheetah_dir | ant_vel | ant_dir | navigation_2d) flags=(--paper) ;; esac
case $task in *_dir) flags+=(--by-task) ;; esac  # and the direction tasks their returns per direction
metarl compare --seeds "${flags[@]}" "$results"/*.json | tee "$results/compare.txt"
trained=()  # the learners' run directories give the figure its training curves
shopt -s nullglob  # a VARIANT run alone: no training curves of the config's runs yet
for learner in $learners; do trained+=("$runs/${learner}"_seed*); done
shopt -u nullglob
metarl plot --seeds "$results"/*.json "${trained[@]}" --out "$results/$task.png"
