#!/usr/bin/env bash
# The same benchmarks on the code before the speed work (commit ef2897e, the foundation), for the
# before/after table: the old source is unpacked to a temporary folder and put first on PYTHONPATH.
# Usage: bash benchmarks/before.sh [REV]   -> benchmarks/results/*_before.json
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
REV="${1:-ef2897e}"
PY="$(pwd)/${PY:-.venv/bin/python}"
SRC="$(mktemp -d)"
trap 'rm -rf "$SRC"' EXIT
git archive "$REV" src | tar -x -C "$SRC"
export PYTHONPATH="$SRC/src"
"$PY" -c "import natpg, sys; assert natpg.__file__.startswith('$SRC'), natpg.__file__"
"$PY" benchmarks/update_cost.py --rules ac-sgd smac woodbury-k8 --name update_cost_before
"$PY" benchmarks/single_sample.py --repeats 2 --name single_sample_before
"$PY" benchmarks/throughput.py --envs CartPole-v1 HalfCheetah-v5 --backends gymnasium --kinds raw natpg \
    --repeats 3 --name throughput_before
