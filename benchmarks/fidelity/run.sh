#!/usr/bin/env bash
# Fidelity screening: every reading × {CartPole, Acrobot, Pendulum} × 4 algorithms × seeds, with `natpg bench`.
# Usage: bash benchmarks/fidelity/run.sh OUT_ROOT [SEEDS] [WORKERS]
# Seeds run outermost, so an interrupted study has every reading at the first seeds; rerun the same
# command to resume (bench skips finished runs and resumes unfinished ones from their checkpoints).
# Screening budgets: CartPole-v1 and Acrobot-v1 200k steps, Pendulum-v1 500k steps.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../driver.sh"
out="${1:?usage: run.sh OUT_ROOT [SEEDS] [WORKERS]}"
seeds="${2:-0,1,2}"
workers="${3:-2}"
source "$here/readings.sh"
IFS=',' read -ra seed_list <<< "$seeds"
for seed in "${seed_list[@]}"; do
  for entry in "${READINGS[@]}"; do
    name="${entry%%|*}"; sets="${entry#*|}"
    # shellcheck disable=SC2086
    "$natpg" bench --out "$out/$name" --envs CartPole-v1,Acrobot-v1 --seeds "$seed" --steps 200000 \
      --workers "$workers" --quiet --retries 1 $sets
    # shellcheck disable=SC2086
    "$natpg" bench --out "$out/$name" --envs Pendulum-v1 --seeds "$seed" --steps 500000 \
      --workers "$workers" --quiet --retries 1 $sets
  done
done
