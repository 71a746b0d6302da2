#!/usr/bin/env bash
# Every speed figure of README.md, from nothing: `make bench` (or `bash benchmarks/run_all.sh`).
# Each benchmark writes its JSON under benchmarks/results/ after every sample and skips what is already
# there; pass --force to a benchmark to remeasure. About 15 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY="${PY:-.venv/bin/python}"
bash benchmarks/profile.sh after
"$PY" benchmarks/update_cost.py
"$PY" benchmarks/throughput.py --steps 5000 --repeats 3
"$PY" benchmarks/single_sample.py --steps 5000 --repeats 3
"$PY" benchmarks/render.py
