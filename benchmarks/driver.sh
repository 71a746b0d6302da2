# Sourced by the shell drivers under benchmarks/: sets `natpg` (the binary in $NATPG, by default this checkout's
# .venv/bin/natpg) and one thread per process (OMP, MKL), as every benchmark and grid runs.
natpg="${NATPG:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/natpg}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# The paper's six MuJoCo tasks, in the order the studies run them.
mujoco_envs=(HalfCheetah-v5 Hopper-v5 Swimmer-v5 Walker2d-v5 Pusher-v5 Humanoid-v5)
# Helpers of the report scripts (comparison reports copy run folders into a temporary folder first).
report_runs() {  # report_runs ROOT OUT_DIR TITLE NOTES_FILE: `natpg report`, with the notes if the file exists
  local notes=()
  [ -f "$4" ] && notes=(--notes "$4")
  "$natpg" report "$1" --out "$2" --title "$3" "${notes[@]}"
}
copy_runs() {  # copy_runs SRC_ROOT DEST_ROOT PATH...: the run folders under SRC_ROOT/PATH, without checkpoints
  local src="$1" dest="$2"; shift 2
  mkdir -p "$dest"
  for path in "$@"; do
    [ -e "$src/$path" ] && tar -C "$src" -cf - --exclude=checkpoints "$path" | tar -C "$dest" -xf -
  done
  return 0
}
