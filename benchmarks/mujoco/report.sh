#!/usr/bin/env bash
# The MuJoCo reports of docs/results/mujoco/, from the study's grid folders, each by one `natpg report`:
#   OUT/             the main grid (paper-inferred, 6 tasks x 4 algorithms x 5 seeds, 1 M steps): STUDY/mujoco-inferred
#   OUT/literal/     SMAC under `paper` (STUDY/mujoco-literal) beside SMAC under `paper-inferred` (the main grid)
#   OUT/long/        HalfCheetah-v5 at 5 M steps (STUDY/mujoco-long)
#   OUT/ablation/    SMAC B = 1 (STUDY/mujoco-ablation-b1) beside B = 1000 (the main grid's SMAC, seeds 0-2)
# Usage: bash benchmarks/mujoco/report.sh STUDY OUT      e.g. ~/natpg-study docs/results/mujoco
# A part whose grid folder does not exist yet is left out (and said so). Comparison reports copy the run
# folders (without checkpoints) into a fresh temporary folder; nothing under STUDY is changed. Each part's
# notes, if present, are OUT/notes.md, OUT/literal-notes.md, OUT/long-notes.md and OUT/ablation-notes.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../driver.sh"
[ $# -eq 2 ] || { echo "usage: report.sh STUDY OUT" >&2; exit 2; }
study="$1" out="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

report_runs "$study/mujoco-inferred" "$out" "MuJoCo under paper-inferred" "$out/notes.md"

if [ -d "$study/mujoco-literal" ]; then
  copy_runs "$study/mujoco-literal" "$work/literal/paper" "${mujoco_envs[@]}"
  copy_runs "$study/mujoco-inferred" "$work/literal/paper-inferred" "${mujoco_envs[@]/%//smac}"
  report_runs "$work/literal" "$out/literal" "SMAC on MuJoCo: the paper read literally against paper-inferred" \
    "$out/literal-notes.md"
else echo "no $study/mujoco-literal yet: literal/ left out"; fi

if [ -d "$study/mujoco-long" ]; then
  report_runs "$study/mujoco-long" "$out/long" "HalfCheetah-v5 at 5 M steps" "$out/long-notes.md"
else echo "no $study/mujoco-long yet: long/ left out"; fi

if [ -d "$study/mujoco-ablation-b1" ]; then
  copy_runs "$study/mujoco-ablation-b1" "$work/ablation/b1" HalfCheetah-v5 Hopper-v5
  copy_runs "$study/mujoco-inferred" "$work/ablation/b1000" HalfCheetah-v5/smac/seed{0,1,2} Hopper-v5/smac/seed{0,1,2}
  report_runs "$work/ablation" "$out/ablation" "SMAC B = 1 against B = 1000 under paper-inferred" "$out/ablation-notes.md"
else echo "no $study/mujoco-ablation-b1 yet: ablation/ left out"; fi
