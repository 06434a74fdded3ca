#!/usr/bin/env bash
# Stages here, before the GPU call, what benchmarks/gpu.sh needs there and the GPU machine lacks
# (it has no network, and its repository copy has no ../shared beside it):
#
#   .gpu-carry/wheels/  CPython 3.12 x86-64 wheels of the packages warpbench imports that the
#                       machine's image does not hold (nibabel, pydantic and pydantic's own
#                       needs), at the versions this checkout's .venv runs; not duckdb, streamlit,
#                       plotly or SimpleITK: neither the CUDA tests nor benchmarks/gpu.py import
#                       them;
#   .gpu-carry/data/    a copy of ../shared/data (the brain and the hippocampus), which gpu.sh
#                       links back to ../shared/data there.
#
# .gpu-carry/ must be ignored by git (it holds the data, which is never committed) and named in
# the device call's carry; it must stay well under the call's 64 MiB with the working tree. It
# prints the total size.
#
#     bash benchmarks/gpu_wheels.sh [DEST]      # DEST: default .gpu-carry
#
# PYTHON (default .venv/bin/python) is the interpreter whose package versions are pinned and
# whose pip downloads them (from the registry, or the mirror pip is configured with).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.gpu-carry}
PYTHON=${PYTHON:-.venv/bin/python}
PACKAGES=(nibabel pydantic pydantic-core annotated-types typing-inspection typing-extensions)

read -r -a PINS <<<"$("$PYTHON" -c '
import sys
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))' "${PACKAGES[@]}")"

rm -rf "$DEST/wheels" "$DEST/data"
mkdir -p "$DEST/wheels"
# pip matches manylinux tags exactly: the usual ones of a wheel built for glibc x86-64.
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$DEST/wheels" "${PINS[@]}"
cp -r ../shared/data "$DEST/data"

ls -1 "$DEST/wheels"
du -sh "$DEST/wheels" "$DEST/data"
du -sh "$DEST"
