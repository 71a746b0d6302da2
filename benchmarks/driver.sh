# Sourced by the shell drivers under benchmarks/: sets `natpg` (the binary in $NATPG, by default this checkout's
# .venv/bin/natpg) and one thread per process (OMP, MKL), as every benchmark and grid runs.
natpg="${NATPG:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/natpg}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# The paper's six MuJoCo tasks, in the order the studies run them.
mujoco_envs=(HalfCheetah-v5 Hopper-v5 Swimmer-v5 Walker2d-v5 Pusher-v5 Humanoid-v5)
