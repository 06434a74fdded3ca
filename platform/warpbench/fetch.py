"""Fetching a dataset that has a public download (``warpbench fetch NAME``).

A block of ``datasets.yaml`` declares its download as a ``download:`` mapping (:class:`Download`),
or its kind's plugin declares one as the class attribute ``download``. Fetching prints the licence
before any byte is asked for, downloads resumably, verifies the sha256, and unpacks into a hidden
sibling of the destination that one rename puts into place, so a reader never sees half a
dataset. A marker file in the destination (:data:`MARKER`) makes a second fetch a no-op.

From pooch: :func:`pooch.retrieve` runs the download into a temporary file, checks its sha256
(its error names the file and both digests, and deletes it) and moves it into place;
:class:`pooch.Untar` and :class:`pooch.Unzip` extract. Ours, because pooch does not do it:

- resuming (:class:`ResumingDownloader`, a pooch downloader): pooch's HTTP downloader always
  starts at byte 0 into a fresh temporary file, so a cut connection would lose everything;
- refusing members that would land outside the destination (:func:`check_members`): pooch
  extracts everything (on Python < 3.12 without tarfile's ``data`` filter), and zipfile silently
  rewrites ``../`` names instead of refusing them;
- the staging folder, the rename and the marker: pooch extracts next to the archive and takes an
  existing extraction folder as done, which is the half-written dataset this module avoids.

pooch and requests are imported only to fetch, so :class:`Download`, which every block's options
know, stays cheap to import.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Callable, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, Field, StrictInt, StrictStr
from tqdm import tqdm

from warpbench.options import Settings, must_be, validate

#: The file a finished fetch leaves in its destination: url, sha256, format and time.
MARKER = ".warpbench-fetched.json"
#: Bytes read from the connection at a time.
CHUNK = 1 << 16
#: Seconds to connect, and to wait for the next bytes, before a download counts as cut.
TIMEOUT = (15, 60)


class FetchError(ValueError):
    """A dataset that cannot be fetched (no download declared, a destination in use, a failed or
    corrupt download, an unsafe archive); the message names the dataset and the file."""


def _downward(path: str) -> str:
    """``path`` when it is relative and stays inside its folder (no ``..``)."""
    if _escapes(path):
        raise ValueError(f"must be a relative path inside the folder, got {path!r}")
    return path


Inside = Annotated[StrictStr, AfterValidator(_downward)]


class Download(Settings):
    """A dataset's public download: one file, its checksum and licence, where its contents go."""

    url: Annotated[StrictStr, Field(pattern=r"^https?://\S+$"),
                   must_be("an http:// or https:// URL")]
    """Where the file is published (http or https)."""
    sha256: Annotated[StrictStr, Field(pattern=r"^[0-9a-fA-F]{64}$"),
                      must_be("a sha256 digest: 64 hexadecimal digits")]
    """The file's sha256; a download with another digest is deleted."""
    format: Literal["zip", "tar", "file"]
    """`zip`, `tar` (compressed or not: .tar, .tar.gz, .tgz, .tar.xz) or `file` (kept as it is,
    under its name in the URL)."""
    license: str | None = None
    """The data's licence, its name or text, printed before downloading (default: the block's
    `license`)."""
    size: Annotated[StrictInt, Field(gt=0)] | None = None
    """The file's size in bytes, shown before downloading (and the progress bar's total when the
    server does not say)."""
    into: Inside = "."
    """The folder the contents go to, relative to the block's `root` (or to `--to DIR`)."""
    subfolder: Inside | None = None
    """The archive's folder that holds the dataset, when it is not the archive's top level."""

    @property
    def file_name(self) -> str:
        """The downloaded file's name: the URL's last path segment."""
        name = PurePosixPath(unquote(urlsplit(self.url).path)).name
        return name if name not in ("", ".", "..") else "download"


@dataclass(frozen=True)
class FetchPlan:
    """What ``warpbench fetch NAME`` does: the download, its licence, and the destination."""

    name: str
    download: Download
    license: str
    target: Path
    #: The block's ``root`` (resolved), where readers look; None when the block has none.
    root: Path | None

    @property
    def part(self) -> Path:
        """The partial download, kept next to the destination until it is complete."""
        return self.target.parent / f"{self.download.file_name}.{self.download.sha256[:12]}.part"

    def fetched(self) -> dict[str, Any] | None:
        """The marker of an earlier fetch of this download (None: not fetched yet); a
        :class:`FetchError` when the destination holds something else."""
        record = _marker(self.target)
        if record is not None and record.get("sha256") == self.download.sha256.lower():
            return record
        if record is not None:
            raise FetchError(f"{self.target} holds another download (sha256 "
                             f"{record.get('sha256')}); move it away to fetch {self.download.url}")
        if self.target.exists() and (not self.target.is_dir() or any(self.target.iterdir())):
            raise FetchError(f"{self.target} exists and was not fetched by warpbench (the data may "
                             "already be there: `warpbench datasets` says); move it away, or "
                             "pass --to DIR")
        return None


def _marker(folder: Path) -> dict[str, Any] | None:
    """The fetch marker in ``folder``, or None when there is none readable."""
    try:
        record = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def plan_fetch(config, name: str, dataset_kinds: Callable[[], dict[str, type]],
               to: str | Path | None = None) -> FetchPlan:
    """The plan for dataset ``name`` of the loaded ``datasets.yaml`` ``config``: its block's
    ``download``, else its kind's (``dataset_kinds()`` is called only then, since it loads the
    plugins), unpacked under ``to`` or else the block's ``root``."""
    where = f"{config.path}: dataset {name!r}"
    if name not in config.datasets:
        raise FetchError(f"{config.path}: no dataset {name!r}; defined: "
                         f"{', '.join(config.datasets) or 'none'}")
    block = config.datasets[name]
    if not isinstance(block, dict) or "plugin" not in block:
        raise FetchError(f"{where}: expected a mapping with a 'plugin' key")
    kind = None
    if block.get("download") is not None:
        download = validate(Download, block["download"], f"{where}: download", "option",
                            FetchError)
    else:
        kinds = dataset_kinds()
        kind = kinds.get(block["plugin"])
        if kind is None:
            raise FetchError(f"{where}: no installed plugin supplies dataset kind "
                             f"{block['plugin']!r} (installed kinds: "
                             f"{', '.join(sorted(kinds)) or 'none'})")
        download = getattr(kind, "download", None)
        if download is None:
            raise FetchError(f"{where}: no public download: its block has no 'download' and its "
                             f"kind {block['plugin']!r} declares none; obtain the data as its "
                             "source says and set the block's root")
    licence = download.license or block.get("license") or getattr(kind, "license", "")
    if not licence:
        raise FetchError(f"{where}: its download states no licence; add 'license' to the block "
                         "(the name or text of the data's terms)")
    root = block.get("root")
    if root is not None and not isinstance(root, str):
        raise FetchError(f"{where}: option 'root' must be a path, got {root!r}")
    root = Path(os.path.normpath(config.base_dir / root)) if root else None
    base = Path(to) if to is not None else root
    if base is None:
        raise FetchError(f"{where}: the block has no 'root' to fetch into; pass --to DIR")
    target = Path(os.path.normpath(base / download.into))
    return FetchPlan(name=name, download=download, license=licence, target=target, root=root)


def fetch(plan: FetchPlan, progress: bool = True) -> None:
    """Download, verify and unpack ``plan``'s file into its destination, in one rename.

    A cut connection (or Ctrl-C) keeps the bytes so far in :attr:`FetchPlan.part`, which the next
    call continues; a wrong checksum or an unsafe archive leaves nothing behind."""
    import pooch
    import requests

    download, target = plan.download, plan.target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".fetching",
                                    dir=target.parent))
    try:
        with _quiet(pooch.get_logger()):
            try:
                archive = pooch.retrieve(
                    download.url, known_hash=f"sha256:{download.sha256.lower()}",
                    fname=download.file_name, path=staging,
                    downloader=ResumingDownloader(download.file_name, plan.part, download.size,
                                                  progress))
            except requests.RequestException as exc:
                raise FetchError(_stopped(plan, exc)) from None
            except ValueError as exc:  # pooch: the digest differs, the download is deleted
                raise FetchError(f"dataset {plan.name!r}: {exc}") from None
            try:
                unpacked = _unpack(Path(archive), staging / "unpacked", plan)
            except KeyboardInterrupt:
                if Path(archive).exists():  # verified: the next fetch only unpacks it
                    os.replace(archive, plan.part)
                raise
        record = {"dataset": plan.name, "url": download.url, "sha256": download.sha256.lower(),
                  "format": download.format,
                  "fetched": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (unpacked / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        if target.is_dir():  # empty: FetchPlan.fetched refuses anything else
            target.rmdir()
        os.rename(unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stopped(plan: FetchPlan, error: Exception) -> str:
    """The message for a download that stopped with ``error``."""
    import requests

    where = f"dataset {plan.name!r}: download of {plan.download.url}"
    broke = isinstance(error, requests.exceptions.ChunkedEncodingError)
    reason = "the connection broke off" if broke else error
    if plan.part.exists():
        return (f"{where} stopped ({reason}); the {plan.part.stat().st_size:,} bytes so far are "
                f"kept in {plan.part}: run the same command to resume")
    return f"{where} failed: {reason}"


@contextmanager
def _quiet(logger: logging.Logger):
    """``logger`` (pooch's, which prints every step to stderr) limited to warnings meanwhile."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class ResumingDownloader:
    """A pooch downloader that continues a kept part file with an HTTP Range request, then hands
    the complete file to pooch (which verifies it).

    A server that ignores Range (200), or answers for other bytes, restarts the file from byte 0;
    a part the server finds complete (416 for its length) is handed over as it is, one it finds
    too long gets a fresh request. Content encoding is refused
    (``identity``), so the bytes on the wire are the file's and offsets mean the same."""

    def __init__(self, name: str, part: Path, size: int | None, progress: bool) -> None:
        self.name = name
        self.part = part
        self.size = size
        self.progress = progress

    def __call__(self, url: str, output_file: str, pooch_instance) -> None:
        import requests

        have = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT) as response:
            status, answered = response.status_code, response.headers.get("Content-Range", "")
            complete = have > 0 and status == 416 and answered == f"bytes */{have}"
            stale = have > 0 and not complete and (
                status == 416 or (status == 206 and not answered.startswith(f"bytes {have}-")))
            if not (complete or stale):
                response.raise_for_status()
                self._write(response, have if status == 206 else 0)
        if stale:  # the part is not a prefix of what the server has: start afresh
            self.part.unlink()
            return self(url, output_file, pooch_instance)
        os.replace(self.part, output_file)

    def _write(self, response, offset: int) -> None:
        """Append the response's body to the part (from byte ``offset``), with a progress bar."""
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else self.size
        with open(self.part, "ab" if offset else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=self.name, disable=not self.progress, leave=False) as bar:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def _unpack(archive: Path, folder: Path, plan: FetchPlan) -> Path:
    """The folder holding ``archive``'s contents, unpacked into the new ``folder`` (for a single
    file, the file moved into it); for a ``subfolder``, that folder inside it."""
    import pooch

    download = plan.download
    if download.format == "file":
        folder.mkdir()
        os.replace(archive, folder / archive.name)
        return folder
    check_members(archive, download.format, plan)
    extract = pooch.Unzip if download.format == "zip" else pooch.Untar
    extract(extract_dir=str(folder))(str(archive), "download", None)
    if download.subfolder is None:
        return folder
    inner = folder / download.subfolder
    if not inner.is_dir():
        raise FetchError(f"dataset {plan.name!r}: {archive.name} has no folder "
                         f"{download.subfolder!r} (its download's subfolder)")
    return inner


def check_members(archive: Path, archive_format: str, plan: FetchPlan) -> None:
    """Refuse an archive with a member that would be written outside the destination: an
    absolute name, a name with ``..``, a link that is absolute or has ``..`` (a link pointing
    down from its folder stays inside whatever the other links are), or a device or pipe."""
    where = f"dataset {plan.name!r}: {archive.name}"
    try:
        if archive_format == "zip":
            with zipfile.ZipFile(archive) as opened:
                members = [(name, None, "") for name in opened.namelist()]
        else:
            with tarfile.open(archive) as opened:
                members = [(m.name, m.linkname if m.issym() or m.islnk() else None,
                            "" if m.isfile() or m.isdir() or m.issym() or m.islnk()
                            else "a device or pipe") for m in opened.getmembers()]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise FetchError(f"{where}: not a readable {archive_format} archive ({exc})") from None
    for name, link, odd in members:
        if odd:
            raise FetchError(f"{where}: member {name!r} is {odd}; refused")
        if _escapes(name):
            raise FetchError(f"{where}: member {name!r} would land outside {plan.target}; "
                             "refused, nothing was unpacked")
        if link is not None and _escapes(link):
            raise FetchError(f"{where}: member {name!r} links to {link!r}, outside "
                             f"{plan.target}; refused, nothing was unpacked")


def _escapes(path: str) -> bool:
    """Whether an archive path is absolute or climbs with ``..``."""
    return PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts
