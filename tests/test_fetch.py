"""`warpbench fetch` against a file server on 127.0.0.1 that honours Range: the licence first,
unpacking into place, resuming after a cut connection or Ctrl-C, a wrong checksum or an unsafe
archive leaving nothing behind, a second fetch asking for nothing, and the errors."""

import hashlib
import io
import json
import random
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer

import click
import pytest
import tqdm
from click.testing import CliRunner

from warpbench.cli.data import COMMANDS
from warpbench.config import load_config
from warpbench import fetch as fetching
from warpbench.fetch import MARKER, Download, FetchError, fetch, plan_fetch

BIG = random.Random(0).randbytes(300_000)  # incompressible, so the archive has several chunks
FILES = {"imagesTr/s1.bin": BIG, "labelsTr/s1.bin": b"labels"}


class FileServer:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1 with an ephemeral port, honouring
    ``Range: bytes=N-`` unless told not to; logs every request's path and Range header, counts
    the body bytes sent, can cut the next response after ``cut_after`` bytes, and answers 503
    after ``max_requests``."""

    max_requests = 10

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.sent = 0
        self.cut_after: int | None = None
        self.honour_range = True
        self.httpd = HTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a stuck client cannot hold the test

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                wanted = self.headers.get("Range")
                server.requests.append({"path": self.path, "range": wanted})
                body = server.files.get(self.path.lstrip("/"))
                if len(server.requests) > server.max_requests or body is None:
                    self.send_error(503 if body is not None else 404)
                    return
                start = 0
                if wanted and server.honour_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if server.cut_after is not None:  # close mid-body, once
                    payload, server.cut_after = payload[:server.cut_after], None
                self.wfile.write(payload)
                server.sent += len(payload)

        return Handler


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    served = FileServer()
    served.thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()
    served.thread.join(timeout=5)


def tar_gz(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serve_config(tmp_path, server, name: str, data: bytes, block: str = "root: data/toy",
                 **download) -> str:
    """A datasets.yaml whose dataset 'toy' downloads ``data``, served as ``name``."""
    server.files[name] = data
    download = {"url": server.url(name), "sha256": sha256(data), "format": "tar", **download}
    config = tmp_path / "datasets.yaml"
    config.write_text(f"datasets:\n  toy:\n    plugin: decathlon\n    {block}\n"
                      f"    license: CC-BY 4.0\n    download: {json.dumps(download)}\n")
    return str(config)


def warpbench_fetch(config: str, *args: str):
    group = click.Group(commands=COMMANDS)
    return CliRunner().invoke(group, ["fetch", "toy", "--config", config, "--quiet", *args])


def assert_unpacked(folder) -> None:
    for name, data in FILES.items():
        assert (folder / name).read_bytes() == data
    assert json.loads((folder / MARKER).read_text())["sha256"]


@pytest.mark.parametrize("archive_format", ["tar", "zip", "file"])
def test_fetch_prints_the_licence_first_and_unpacks_into_place(tmp_path, server, archive_format):
    data = {"tar": tar_gz, "zip": zipped}.get(archive_format, lambda files: BIG)(FILES)
    name = {"tar": "toy.tar.gz", "zip": "toy.zip", "file": "s1.bin"}[archive_format]
    config = serve_config(tmp_path, server, name, data, format=archive_format, size=len(data))

    result = warpbench_fetch(config)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "toy: licence: CC-BY 4.0"
    assert lines[1] == f"  download {server.url(name)} ({len(data):,} bytes)"
    assert lines[-1] == f"toy: fetched into {tmp_path / 'data' / 'toy'}"
    target = tmp_path / "data" / "toy"
    if archive_format == "file":
        assert (target / "s1.bin").read_bytes() == BIG
    else:
        assert_unpacked(target)
    marker = json.loads((target / MARKER).read_text())
    assert marker["url"] == server.url(name) and marker["sha256"] == sha256(data)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["toy"]  # no part, no staging
    assert server.requests == [{"path": f"/{name}", "range": None}]


def test_a_second_fetch_downloads_nothing(tmp_path, server):
    config = serve_config(tmp_path, server, "toy.tar.gz", tar_gz(FILES))
    assert warpbench_fetch(config).exit_code == 0
    server.requests.clear()

    result = warpbench_fetch(config)
    assert result.exit_code == 0, result.output
    assert "already fetched" in result.stdout and "nothing downloaded" in result.stdout
    assert server.requests == []


def test_a_cut_connection_resumes_from_the_part(tmp_path, server):
    data = tar_gz(FILES)
    config = serve_config(tmp_path, server, "toy.tar.gz", data)
    server.cut_after = 100_000

    result = warpbench_fetch(config)
    assert isinstance(result.exception, FetchError)
    assert "run the same command to resume" in str(result.exception)
    parts = list((tmp_path / "data").glob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size <= 100_000
    kept = parts[0].stat().st_size
    assert not (tmp_path / "data" / "toy").exists()

    result = warpbench_fetch(config)
    assert result.exit_code == 0, result.output
    assert f"resuming after the {kept:,} bytes" in result.stdout
    assert [r["range"] for r in server.requests] == [None, f"bytes={kept}-"]
    assert len(data) <= server.sent <= len(data) + 100_000 - kept  # about once, not twice
    assert_unpacked(tmp_path / "data" / "toy")
    assert not list((tmp_path / "data").glob("*.part"))


def test_ctrl_c_keeps_the_part_for_the_next_fetch(tmp_path, server, monkeypatch):
    data = tar_gz(FILES)
    config = serve_config(tmp_path, server, "toy.tar.gz", data)
    original = tqdm.tqdm.update

    def interrupted(bar, n=1):
        original(bar, n)
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:  # Ctrl-C after the first chunk
        patched.setattr(tqdm.tqdm, "update", interrupted)
        result = warpbench_fetch(config)
    assert result.exit_code != 0
    assert "run the same command to resume" in result.output
    assert [p.suffix for p in (tmp_path / "data").iterdir()] == [".part"]  # no staging left

    assert warpbench_fetch(config).exit_code == 0
    assert server.requests[-1]["range"] is not None
    assert_unpacked(tmp_path / "data" / "toy")


def test_a_server_ignoring_range_restarts_the_file(tmp_path, server):
    data = tar_gz(FILES)
    config = serve_config(tmp_path, server, "toy.tar.gz", data)
    server.cut_after = 100_000
    assert warpbench_fetch(config).exit_code != 0
    server.honour_range = False

    result = warpbench_fetch(config)
    assert result.exit_code == 0, result.output
    assert server.requests[-1]["range"] is not None  # asked for the rest, got everything
    assert_unpacked(tmp_path / "data" / "toy")


def test_a_wrong_checksum_fails_naming_the_file_and_leaves_nothing(tmp_path, server):
    data = tar_gz(FILES)
    config = serve_config(tmp_path, server, "toy.tar.gz", data, sha256="ab" * 32)

    result = warpbench_fetch(config)
    assert isinstance(result.exception, FetchError)
    message = str(result.exception)
    assert "toy.tar.gz" in message and "ab" * 32 in message and sha256(data) in message
    assert list((tmp_path / "data").iterdir()) == []


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member", [
    "../evil.txt", "/tmp/evil.txt", "imagesTr/../../evil.txt", link("out", "../.."),
    link("out", "/etc"), link("hard", "../evil.txt", tarfile.LNKTYPE), link("up", "d/.."),
    "zip:../evil.txt"])
def test_an_archive_member_escaping_the_folder_is_refused(tmp_path, server, member):
    if isinstance(member, str) and member.startswith("zip:"):
        data, archive_format = zipped({**FILES, member[4:]: b"x"}), "zip"
    else:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as archive:
            for name, content in FILES.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
            if isinstance(member, str):
                info = tarfile.TarInfo(member)
                info.size = 1
                archive.addfile(info, io.BytesIO(b"x"))
            else:
                archive.addfile(member)
        data, archive_format = out.getvalue(), "tar"
    config = serve_config(tmp_path, server, "evil", data, format=archive_format)

    result = warpbench_fetch(config)
    assert isinstance(result.exception, FetchError), result.output
    assert "refused" in str(result.exception) and "evil" in str(result.exception)
    assert list((tmp_path / "data").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "datasets.yaml"]


def test_to_dir_and_a_subfolder_of_the_archive(tmp_path, server):
    data = tar_gz({f"Task01/{name}": content for name, content in FILES.items()})
    config = serve_config(tmp_path, server, "toy.tar.gz", data, block="labels: {1: a}",
                          subfolder="Task01", into="toy")
    assert "pass --to DIR" in str(warpbench_fetch(config).exception)

    result = warpbench_fetch(config, "--to", str(tmp_path / "elsewhere"))
    assert result.exit_code == 0, result.output
    assert_unpacked(tmp_path / "elsewhere" / "toy")
    assert f"set the block's root to {tmp_path / 'elsewhere'}" in result.stdout


def test_a_destination_holding_other_files_is_left_alone(tmp_path, server):
    config = serve_config(tmp_path, server, "toy.tar.gz", tar_gz(FILES))
    (tmp_path / "data" / "toy").mkdir(parents=True)
    (tmp_path / "data" / "toy" / "mine.txt").write_text("mine")

    result = warpbench_fetch(config)
    assert "exists and was not fetched by warpbench" in str(result.exception)
    assert server.requests == []


def test_unknown_names_missing_and_bad_downloads_are_one_clear_error(tmp_path, server):
    config = serve_config(tmp_path, server, "toy.tar.gz", b"x")
    result = CliRunner().invoke(click.Group(commands=COMMANDS),
                                ["fetch", "nope", "--config", config])
    assert str(result.exception) == f"{config}: no dataset 'nope'; defined: toy"

    (tmp_path / "bad.yaml").write_text(
        "datasets:\n  toy: {plugin: files, root: x, download: {url: 'http://127.0.0.1/x'}}\n")
    with pytest.raises(FetchError, match=r"download: missing option 'sha256'.*missing option "
                                         r"'format'"):
        plan_fetch(load_config(tmp_path / "bad.yaml"), "toy", dict)

    (tmp_path / "none.yaml").write_text("datasets:\n  toy: {plugin: plain, root: x}\n")
    loaded = load_config(tmp_path / "none.yaml")
    plain = type("Plain", (), {"license": "CC0"})
    with pytest.raises(FetchError, match="no public download: its block has no 'download' and "
                                         "its kind 'plain' declares none"):
        plan_fetch(loaded, "toy", lambda: {"plain": plain})
    with pytest.raises(FetchError, match="no installed plugin supplies dataset kind 'plain'"):
        plan_fetch(loaded, "toy", dict)


def test_a_download_declared_by_the_plugin(tmp_path, server):
    data = tar_gz(FILES)
    server.files["toy.tar.gz"] = data
    kind = type("Published", (), {
        "license": "CC0", "download": Download(url=server.url("toy.tar.gz"), sha256=sha256(data),
                                               format="tar")})
    (tmp_path / "datasets.yaml").write_text("datasets:\n  toy: {plugin: published, root: d}\n")

    plan = plan_fetch(load_config(tmp_path / "datasets.yaml"), "toy", lambda: {"published": kind})
    assert plan.license == "CC0" and plan.target == tmp_path / "d"
    fetch(plan, progress=False)
    assert_unpacked(tmp_path / "d")
    assert plan.fetched() is not None


def test_ctrl_c_while_unpacking_keeps_the_verified_file(tmp_path, server, monkeypatch):
    data = tar_gz(FILES)
    config = serve_config(tmp_path, server, "toy.tar.gz", data)

    def interrupted(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(fetching, "check_members", interrupted)
        assert warpbench_fetch(config).exit_code != 0
    assert [p.stat().st_size for p in (tmp_path / "data").iterdir()] == [len(data)]

    server.sent = 0
    assert warpbench_fetch(config).exit_code == 0
    assert server.requests[-1]["range"] == f"bytes={len(data)}-" and server.sent == 0
    assert_unpacked(tmp_path / "data" / "toy")
