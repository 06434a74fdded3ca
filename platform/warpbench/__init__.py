"""warpbench: an open evaluation platform for deformable medical image registration.

The names a plugin author needs are importable from here; they load on first use, so a reader of
the store (the leaderboard app) does not pay for importing torch.
"""

__version__ = "0.1.0"
__all__ = ["Dataset", "Grid", "LearningMethod", "Method", "Pair", "Subject", "TrainingJob", "__version__"]

_LAZY = {"Dataset": "warpbench.datasets", "Pair": "warpbench.datasets",
         "Subject": "warpbench.datasets", "Method": "warpbench.methods", "Grid": "warpbench.methods",
         "LearningMethod": "warpbench.methods", "TrainingJob": "warpbench.training"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'warpbench' has no attribute {name!r}")
