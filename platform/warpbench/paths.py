"""Names that become paths, and files that must stay inside their folder.

A dataset's name, a method's name or a subject id becomes part of a path (a cache folder, a field
file's name), so a name from a hostile ``datasets.yaml`` or store, such as ``../escape``, would
read or write outside the folder it is meant for. :func:`safe_component` refuses any name that
is not one plain path component, and :func:`check_inside` refuses a file whose real location
(symlinks resolved) is outside its folder.
"""

from __future__ import annotations

from pathlib import Path

#: Characters that separate, end or escape a path component on some platform.
_SEPARATORS = ("/", "\\", "\0")


class UnsafePathError(ValueError):
    """A name that is not one safe path component, or a file outside its folder; the message
    names it."""


def safe_component(name: str, what: str) -> str:
    """``name`` when it is a single path component (no separator, not ``.`` or ``..``, not
    empty, no control character); else :class:`UnsafePathError` naming ``what`` and ``name``."""
    if not isinstance(name, str) or name in ("", ".", "..") or any(
            char in name for char in _SEPARATORS) or not name.isprintable():
        raise UnsafePathError(f"{what} {name!r} cannot be part of a path: it must be one path "
                              "component (no '/', '\\' or control character, not '.' or '..')")
    return name


def check_inside(folder: str | Path, path: str | Path) -> None:
    """:class:`UnsafePathError`, naming the file and where it leads, when ``path`` with symlinks
    resolved lands outside ``folder`` (also resolved)."""
    real_folder, real = Path(folder).resolve(), Path(path).resolve()
    if not real.is_relative_to(real_folder):
        raise UnsafePathError(f"{path}: leads to {real}, outside the folder {real_folder}, "
                              "so it is refused")
