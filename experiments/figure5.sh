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
# Every stage is skipped when its output exists (an evaluation when its JSON is newer than the
# checkpoint it scores), a stopped meta-training run is continued with --resume (to ITERATIONS,
# so a larger ITERATIONS extends finished runs), and so is a stopped PPO baseline (from its last
# update), so the script can be interrupted and run again. The run directories go to experiments/runs/<task>/, inside the
# repository, so that they can be committed with the results: their TensorBoard curves are then
# published, and a stopped run continues from any clone. RUNS and RESULTS move the run
# directories and the outputs; TASKS sets the number of held-out tasks (default 40). EXTRA holds
# --set overrides for the learners (for example EXTRA="--set trpo.curvature_tasks=0.25").
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
mkdir -p "$runs" "$results"

for learner in $learners; do
    # Each learner takes only its own keys: maml_trpo uses TASK.yaml, the others TASK_LEARNER.yaml.
    learner_config=$config
    [[ $learner == maml_trpo ]] || learner_config=experiments/${task}_$learner.yaml
    [[ -f $learner_config ]] || { echo "no config $learner_config for $learner" >&2; exit 2; }
    for seed in "${seeds[@]}"; do
        run=$runs/${learner}_seed$seed
        if [[ -f $run/checkpoint.pt ]]; then
            metarl train --resume "$run" --set "iterations=$iterations" --no-progress
        else
            metarl train "$learner_config" --out "$run" --seed "$seed" --set "iterations=$iterations" \
                "${extra[@]}" --no-progress
        fi
        json=$results/${learner}_seed$seed.json
        # Re-scored only when best.pt is newer than its JSON (a resumed run may have a new best).
        [[ $json -nt $run/best.pt ]] ||
            metarl evaluate "$run" --checkpoint best --tasks "$tasks" --steps 3 --json "$json"
    done
    # The first seed's θ, so that anyone can re-score it without retraining.
    name=${learner/maml_trpo/maml}
    cp "$runs/${learner}_seed${seeds[0]}/best.pt" "$results/$name.pt"
done

for kind in random pretrained oracle; do
    run=$runs/$kind
    if [[ -f $run/ppo-resume.pt && ! -f $run/checkpoint.pt ]]; then  # an interrupted PPO run
        metarl baseline --resume "$run"
    elif [[ ! -f $run/checkpoint.pt ]]; then
        metarl baseline "$kind" "$config" --out "$run" --timesteps "$ppo_steps"
    fi
    [[ $results/$kind.json -nt $run/checkpoint.pt ]] ||
        metarl evaluate "$run" --tasks "$tasks" --steps 3 --json "$results/$kind.json"
done

flags=()  # the tasks of the paper's Figure 5 also get scores against its random and oracle
case $task in halfcheetah_vel | halfcheetah_dir | ant_vel | ant_dir | navigation_2d) flags=(--paper) ;; esac
case $task in *_dir) flags+=(--by-task) ;; esac  # and the direction tasks their returns per direction
metarl compare --seeds "${flags[@]}" "$results"/*.json | tee "$results/compare.txt"
trained=()  # the learners' run directories give the figure its training curves
for learner in $learners; do trained+=("$runs/${learner}"_seed*); done
metarl plot --seeds "$results"/*.json "${trained[@]}" --out "$results/$task.png"
