#!/usr/bin/env bash
# Trust-region step (step_rule=kl) evaluation, stage by stage, with `natpg bench` under the paper-inferred preset.
# Usage: bash benchmarks/trust_region/run.sh STAGE OUT_ROOT [WORKERS]
#   STAGE screen   SMAC-KL for each candidate δ on the three classic tasks, seeds 0-2, screening budgets
#                  (CartPole-v1, Acrobot-v1 200k steps; Pendulum-v1 500k), the fidelity study's budgets.
#   STAGE classic  SMAC-KL and AC-CG + max-KL at the chosen δ (DELTA=...), seeds 0-4, the presets' budgets
#                  (0.5M, 0.5M, 1.5M) — compared with docs/results/classic-inferred (per-task-tuned SMAC).
#   STAGE mujoco   the same two on the six MuJoCo tasks, seeds 0-4, 1M steps — compared with docs/results/mujoco.
# Rerun the same command to resume (bench skips finished runs, resumes unfinished ones from checkpoints).
# The rule that picks δ from the screen is fixed in docs/results/trust-region/plan.md before any run.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../driver.sh"
[ $# -ge 2 ] || { echo "usage: run.sh screen|classic|mujoco OUT_ROOT [WORKERS]" >&2; exit 2; }
stage="$1" out="$2" workers="${3:-2}"
candidates=(0.001 0.003 0.01 0.03)
bench() { "$natpg" bench --preset paper-inferred --workers "$workers" --quiet --retries 1 "$@"; }
kl() { echo "--set step_rule=kl --set target_kl=$1"; }
case "$stage" in
  screen)
    for delta in "${candidates[@]}"; do
      # shellcheck disable=SC2046
      bench --out "$out/screen/delta-$delta" --envs CartPole-v1,Acrobot-v1 --algos smac --seeds 0-2 --steps 200000 $(kl "$delta")
      # shellcheck disable=SC2046
      bench --out "$out/screen/delta-$delta" --envs Pendulum-v1 --algos smac --seeds 0-2 --steps 500000 $(kl "$delta")
    done ;;
  classic|mujoco)
    delta="${DELTA:?set DELTA to the δ chosen by the screen}"
    if [ "$stage" = classic ]; then envs=(CartPole-v1 Acrobot-v1 Pendulum-v1); steps=(); else
      envs=("${mujoco_envs[@]}"); steps=(--steps 1000000); fi
    for env in "${envs[@]}"; do
      # shellcheck disable=SC2046
      bench --out "$out/$stage" --envs "$env" --algos smac --seeds 0-4 "${steps[@]}" $(kl "$delta")
      # shellcheck disable=SC2046
      bench --out "$out/$stage" --envs "$env" --algos ac-cg --seeds 0-4 "${steps[@]}" $(kl "$delta")
    done ;;
  *) echo "unknown stage $stage (screen, classic or mujoco)" >&2; exit 2 ;;
esac
