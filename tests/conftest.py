"""Shared fixtures. Only the built-in plugins load, so plugins installed on a developer's machine
stay out of the test run."""

import os
from pathlib import Path

import pytest

BUILTIN_PLUGINS = "executors,synthetic,decathlon,classical"
os.environ.setdefault("WARPBENCH_LOAD_PLUGINS", BUILTIN_PLUGINS)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def hippocampus_root() -> Path:
    root = SHARED_DATA / "hippocampus"
    if not (root / "imagesTr").is_dir():
        pytest.skip(f"real hippocampus data not found at {root}")
    return root
