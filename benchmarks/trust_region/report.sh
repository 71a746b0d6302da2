#!/usr/bin/env bash
# The trust-region comparison report of one stage: SMAC and AC-CG with Table 2's step sizes (the paper-inferred
# grid) beside SMAC-KL and AC-CG-KL (run.sh's grid), in one `natpg report`.
# Usage: bash benchmarks/trust_region/report.sh classic|mujoco TUNED_GRID KL_ROOT OUT
#   TUNED_GRID  the paper-inferred grid folder (e.g. ~/natpg-study/classic-inferred or ~/natpg-study/mujoco-inferred)
#   KL_ROOT     run.sh's OUT_ROOT (its STAGE folder is read)
#   OUT         the report folder (e.g. docs/results/trust-region/classic)
# The run folders (without checkpoints) are copied into a fresh temporary folder, tuned/ and kl/, which the
# report labels by the settings that differ (step_rule, target_kl); nothing under the grids is changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../driver.sh"
[ $# -eq 4 ] || { echo "usage: report.sh classic|mujoco TUNED_GRID KL_ROOT OUT" >&2; exit 2; }
stage="$1" tuned="$2" kl="$3/$1" out="$4"
case "$stage" in
  classic) envs=(CartPole-v1 Acrobot-v1 Pendulum-v1); title="Trust-region step on classic control" ;;
  mujoco) envs=("${mujoco_envs[@]}")
          title="Trust-region step on MuJoCo" ;;
  *) echo "unknown stage $stage (classic or mujoco)" >&2; exit 2 ;;
esac
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for env in "${envs[@]}"; do
  copy_runs "$tuned" "$work/tuned" "$env/smac" "$env/ac-cg"
  copy_runs "$kl" "$work/kl" "$env"
done
report_runs "$work" "$out" "$title" "$(dirname "$out")/$stage-notes.md"
