#!/usr/bin/env bash
# Where the time goes in `natpg train`: pyinstrument call trees (text) for CartPole-v1 and HalfCheetah-v5.
# Usage: bash benchmarks/profile.sh [TAG]   -> benchmarks/results/profiles/{cartpole,cheetah}_TAG.txt
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
TAG="${1:-after}"
BIN="${BIN:-.venv/bin}"
OUT=benchmarks/results/profiles
mkdir -p "$OUT"
"$BIN/pyinstrument" -o "$OUT/cartpole_$TAG.txt" -m natpg.cli train --env CartPole-v1 --algo smac \
    --steps 20000 --out /tmp/natpg-profile-cartpole --overwrite --quiet
"$BIN/pyinstrument" -o "$OUT/cheetah_$TAG.txt" -m natpg.cli train --env HalfCheetah-v5 --algo smac \
    --steps 10000 --out /tmp/natpg-profile-cheetah --overwrite --quiet
echo "profiles: $OUT/cartpole_$TAG.txt $OUT/cheetah_$TAG.txt"
