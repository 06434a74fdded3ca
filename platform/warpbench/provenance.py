"""Facts about the software and machine that produced a result, stored with every run."""

from __future__ import annotations

import functools
import socket
import subprocess
from pathlib import Path

import torch

import warpbench


@functools.cache
def git_revision() -> str:
    """The warpbench source's commit, with ``+dirty`` when it has uncommitted changes;
    ``unknown`` outside a git checkout (e.g. an installed wheel)."""
    source = Path(warpbench.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, str | None]:
    """Software versions, device and host of this process."""
    name = str(device)
    if device.type == "cuda":
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    return {
        "device": name,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "warpbench_version": warpbench.__version__,
        "git_revision": git_revision(),
        "host": socket.gethostname(),
    }
