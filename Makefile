# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv and installs everything from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1

.PHONY: demo test install install-bench bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The benchmark extra: envpool backend, Stable-Baselines3 baseline, profilers (see benchmarks/README.md).
install-bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,bench]"

bench: install-bench
	bash benchmarks/run_all.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/natpg train --env CartPole-v1 --algo smac --preset paper-inferred --seed 0 --steps 200000 --out runs/demo --quiet --overwrite
	$(BIN)/natpg plot runs/demo

clean:
	rm -rf $(VENV) runs .pytest_cache
