#!/usr/bin/env bash
# Issue 20's GPU figures in one call of at most 8 minutes on the GPU machine: the CUDA tests,
# greedy and syn seconds per full-size brain pair alone and in batches of 2, 4 and 8, and the
# networks' training steps per second and inference ms per pair, with and without mixed
# precision; benchmarks/gpu.py says what each figure is. Everything goes to $OUT/gpu.json,
# rewritten after each measurement (a step cut short keeps what it measured), the whole output to
# $OUT/gpu.log, and the tables are printed at the end.
#
# Here first, once: bash benchmarks/gpu_wheels.sh (wheels and data into .gpu-carry/, ignored by
# git). Then, through the device tool:
#
#     run(command="bash benchmarks/gpu.sh", carry=[".gpu-carry"], timeout_s=480)
#
# Dry run on the CPU (the same steps at the smallest sizes; nothing is installed where the
# interpreter already has warpbench, and ../shared/data is used where it is):
#
#     OUT=/tmp/gpu-dry PYTHON=.venv/bin/python bash benchmarks/gpu.sh --dry-run
#
# Time budget, BUDGET seconds in all (default 460, inside the call's 480): installing, at most
# 30 s per pip command (about 10 s expected); the CUDA tests, at most 75 s; the classical
# timings, whatever is left but 130 s; the networks, whatever is left but 10 s; the table.
# The dry run took 72 to 107 s on 2 shared CPU cores (tests 3 s, classical and networks about
# half each of the rest); no GPU run has been made yet.
set -u -o pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder the figures go to}"
PYTHON=${PYTHON:-python3}
BUDGET=${BUDGET:-460}
CARRY=.gpu-carry
export PYTHONUNBUFFERED=1
case "${1:-}" in
    --dry-run) SIZES=(--device cpu --smallest) ;;
    "") SIZES=(--device cuda) ;;
    *) echo "usage: bash benchmarks/gpu.sh [--dry-run]" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu.log") 2>&1
FIGURES=$OUT/gpu.json
rm -f "$FIGURES"

# step CAP RESERVE PART: gpu.py's PART for at most CAP seconds, and never into the RESERVE
# seconds kept for the steps after it.
step() {
    local limit=$(( BUDGET - SECONDS - $2 ))
    (( limit > $1 )) && limit=$1
    (( limit > 0 )) || { echo "== $3: skipped, no time left"; return 0; }
    echo "== $3: at most $limit s"
    timeout -k 5 "$limit" "$PYTHON" benchmarks/gpu.py --part "$3" --out "$FIGURES" "${SIZES[@]}"
    local status=$?
    (( status == 124 || status == 137 )) && echo "== $3 stopped at its limit of $limit s"
    (( status != 0 )) && echo "== $3 exited with status $status"
    return 0
}

# What the image lacks: the carried wheels, then warpbench itself (its entry points register the
# built-in plugins), without network.
if ! "$PYTHON" -c "import nibabel, pydantic, importlib.metadata as m; m.distribution('warpbench')" \
        2>/dev/null; then
    pip=("$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore
         --no-index)
    timeout 30 "${pip[@]}" --find-links "$CARRY/wheels" nibabel pydantic &&
        timeout 30 "${pip[@]}" --no-deps --no-build-isolation -e . ||
        { echo "== installing failed"; exit 1; }
fi
# The data sits beside the repository (../shared/data), as the tests and datasets.yaml expect.
if [ ! -e ../shared/data ] && [ -d "$CARRY/data" ]; then
    mkdir -p ../shared && ln -s "$PWD/$CARRY/data" ../shared/data
fi
command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv

step 75 330 tests
step "$BUDGET" 130 classical
step "$BUDGET" 10 learning
"$PYTHON" benchmarks/gpu.py --part table --out "$FIGURES"
