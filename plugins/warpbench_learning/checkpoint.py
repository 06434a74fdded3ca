"""Training state and trained weights on disk.

Both are written under a temporary name and renamed into place, so an interrupted write never
leaves a truncated file where a resume or an evaluation would read it. Weights carry the method,
its version and the training parameters they were trained under, and are refused for any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "weights.pt"


class WeightsMismatch(ValueError):
    """A weights file trained for another method, version or preset than the one asked for."""


def save_atomic(payload: dict[str, Any], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)
    return path


def load_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The training state saved in ``folder``, or None when there is none (read without
    unpickling arbitrary objects: a checkpoint holds tensors, numbers, strings and dicts)."""
    path = Path(folder) / CHECKPOINT_NAME
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def save_weights(folder: Path, state_dict, method: str, version: str, params: dict) -> Path:
    payload = {"method": method, "version": version, "params": params, "state_dict": state_dict}
    return save_atomic(payload, Path(folder) / WEIGHTS_NAME)


def load_weights(path: Path, method: str, version: str, params: dict) -> dict[str, Any]:
    """The state dict in ``path``, after checking it was trained by ``method`` ``version`` under
    ``params``; raises :class:`WeightsMismatch` saying what differs."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    trained = (payload.get("method"), payload.get("version"))
    if trained != (method, version):
        raise WeightsMismatch(
            f"{path} holds weights of {trained[0]} version {trained[1]}, not of {method} "
            f"version {version}; train this method again"
        )
    if payload.get("params") != params:
        stored = payload.get("params") or {}
        differ = sorted(k for k in set(stored) | set(params) if stored.get(k) != params.get(k))
        raise WeightsMismatch(
            f"{path} was trained under other parameters than this preset's (differing: "
            + ", ".join(f"{k}={stored.get(k)!r} vs {params.get(k)!r}" for k in differ)
            + "); train this preset instead"
        )
    return payload["state_dict"]
