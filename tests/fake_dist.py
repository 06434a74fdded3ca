"""Making a plugin visible to importlib.metadata without pip: its source folder on sys.path and a
``*.dist-info`` folder with a ``warpbench`` entry point next to it, as a pip install would leave."""

import sys
import textwrap
from pathlib import Path


def add_distribution(site: Path, dist: str, entry_points: dict[str, str], version: str = "0.1.0",
                     group: str = "warpbench") -> Path:
    """Write ``site/<dist>-<version>.dist-info`` declaring ``entry_points`` (name -> module)."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")
    return info


def install_module(site: Path, module: str, source: str, entry_point: str | None = None) -> None:
    """A one-file plugin module ``module`` with entry point ``entry_point`` (default: its name)."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    add_distribution(site, f"{module}-dist", {entry_point or module: module})


def forget_modules(*prefixes: str) -> None:
    """Drop imported plugin modules so the next test imports its own version."""
    for name in list(sys.modules):
        if name.startswith(prefixes):
            del sys.modules[name]
