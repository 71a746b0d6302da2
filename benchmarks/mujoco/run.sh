#!/usr/bin/env bash
# The MuJoCo study of docs/results/mujoco/, every part in order, with `natpg bench` (resumable: rerun it):
#   1. main grid: 6 tasks x smac, ac-sgd, ac-adam, ac-cg x seeds 0-4, 1 M steps, paper-inferred (one task at a time)
#   2. literal:   SMAC under `paper` on the 6 tasks, seeds 0-4, 1 M steps
#   3. long:      HalfCheetah-v5, SMAC and AC-Adam (the main grid's strongest HalfCheetah baseline by mean), 3 seeds, 5 M
#   4. ablation:  SMAC B = 1 on HalfCheetah-v5 and Hopper-v5, 3 seeds, 1 M (B = 1000: the main grid's SMAC seeds 0-2)
# then, with TRUST_REGION=1, the trust-region evaluation's MuJoCo stage (benchmarks/trust_region/run.sh mujoco).
# Usage: NATPG=../wt-grid/.venv/bin/natpg bash benchmarks/mujoco/run.sh STUDY [WORKERS]   e.g. STUDY=~/natpg-study
# NATPG is the natpg of the worktree pinned at the study's commit (66bb24c), so code changed meanwhile never
# reaches running workers. Run folders go to STUDY/mujoco-inferred, -literal, -long, -ablation-b1.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../driver.sh"
[ $# -ge 1 ] || { echo "usage: run.sh STUDY [WORKERS]" >&2; exit 2; }
study="$1" workers="${2:-2}"
bench() { "$natpg" bench --workers "$workers" --quiet --retries 1 "$@"; }
for env in "${mujoco_envs[@]}"; do
  bench --preset paper-inferred --envs "$env" --algos smac,ac-sgd,ac-adam,ac-cg --seeds 0-4 --steps 1000000 \
    --out "$study/mujoco-inferred"
done
bench --preset paper --envs "$(IFS=,; echo "${mujoco_envs[*]}")" --algos smac --seeds 0-4 --steps 1000000 \
  --out "$study/mujoco-literal"
bench --preset paper-inferred --envs HalfCheetah-v5 --algos smac,ac-adam --seeds 0-2 --steps 5000000 \
  --out "$study/mujoco-long"
bench --preset paper-inferred --envs HalfCheetah-v5,Hopper-v5 --algos smac --seeds 0-2 --steps 1000000 \
  --set batch_size=1 --out "$study/mujoco-ablation-b1"
if [ "${TRUST_REGION:-0}" = 1 ]; then
  DELTA=0.03 NATPG="$natpg" bash "$here/../trust_region/run.sh" mujoco "$study/trust-region" "$workers"
fi
