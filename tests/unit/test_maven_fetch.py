"""Fetching pinned artifacts with the real Maven from a repository on a local HTTP server: a good fetch lands in the
target; a checksum that does not match, or a download cut short, fails the fetch and leaves nothing behind.

The server holds the test's artifact and hands on, from the user's local Maven repository, what Maven itself needs
(the dependency plugin `ceper kafka fetch` brought there): nothing reaches the internet.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ceper.maven import FetchError, fetch_once

USER_REPOSITORY = Path.home() / ".m2" / "repository"
ARTIFACT = "test/ceper/blob/1.0/blob-1.0"
JAR = b"PK\x03\x04" + b"ceper blob " * 4000
POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>1{version}</version><packaging>{packaging}</packaging>
{dependencies}</project>"""
DEPENDENCY = "<dependencies><dependency><groupId>test.ceper</groupId><artifactId>blob</artifactId><version>1.0</version></dependency></dependencies>"
CHECKSUMS = {".sha1": hashlib.sha1, ".md5": hashlib.md5, ".sha256": hashlib.sha256, ".sha512": hashlib.sha512}


@dataclass
class Repository:
    """What the server answers for the test's artifact: its files, and how many bytes of the jar it sends."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_jar_at: int | None = None
    url: str = ""

    def body(self, path: str) -> bytes | None:
        if path in self.files:
            return self.files[path]
        for suffix, digest in CHECKSUMS.items():
            if path.endswith(suffix):
                original = self.body(path.removesuffix(suffix))
                return None if original is None else digest(original).hexdigest().encode()
        local = USER_REPOSITORY / path
        return local.read_bytes() if local.is_file() else None


@pytest.fixture
def repository() -> Iterator[Repository]:
    if not (USER_REPOSITORY / "org/apache/maven/plugins/maven-dependency-plugin/3.8.1").is_dir():
        pytest.fail("the dependency plugin is not in ~/.m2: run `make kafka` (`ceper kafka fetch`) first")
    repo = Repository(files={f"{ARTIFACT}.jar": JAR, f"{ARTIFACT}.pom": _pom("test.ceper", "blob", ".0", "jar").encode()})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            body = repo.body(path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if path.endswith(".jar") and path.startswith(ARTIFACT) and repo.cut_jar_at is not None:
                self.wfile.write(body[: repo.cut_jar_at])  # then the connection closes: a download cut short
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    repo.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield repo
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _pom(group: str, artifact: str, version: str, packaging: str, dependencies: str = "") -> str:
    return POM.format(group=group, artifact=artifact, version=version, packaging=packaging, dependencies=dependencies)


def fetch(repository: Repository, tmp_path: Path) -> Path:
    pom = tmp_path / "pom.xml"
    pom.write_text(_pom("id.koperasi.ceper", "fetch-test", "", "pom", DEPENDENCY))
    settings = tmp_path / "settings.xml"
    settings.write_text(
        "<settings><mirrors><mirror><id>local</id><mirrorOf>*</mirrorOf>"
        f"<url>{repository.url}</url></mirror></mirrors></settings>"
    )
    return fetch_once(
        pom,
        tmp_path / "cache" / "blob-1",
        what="the blob",
        complete=lambda folder: (folder / "blob-1.0.jar").is_file(),
        copy_options=["-DexcludeTransitive=true"],
        maven_options=["-s", str(settings), f"-Dmaven.repo.local={tmp_path / 'm2'}"],
        timeout_s=300,
    )


def test_a_fetch_lands_in_the_target_and_the_next_asks_no_one(repository: Repository, tmp_path: Path) -> None:
    target = fetch(repository, tmp_path)
    assert (target / "blob-1.0.jar").read_bytes() == JAR
    assert [p.name for p in target.parent.iterdir()] == ["blob-1"]  # no staging folder left
    repository.files[f"{ARTIFACT}.jar"] = b"another"
    assert (fetch(repository, tmp_path) / "blob-1.0.jar").read_bytes() == JAR


def test_a_checksum_that_does_not_match_is_refused_and_leaves_nothing(repository: Repository, tmp_path: Path) -> None:
    repository.files[f"{ARTIFACT}.jar.sha1"] = hashlib.sha1(b"what the publisher signed").hexdigest().encode()
    with pytest.raises(FetchError, match=r"Maven could not fetch the blob \(exit 1\)") as refused:
        fetch(repository, tmp_path)
    assert "checksum" in str(refused.value).lower()
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_download_cut_short_leaves_nothing(repository: Repository, tmp_path: Path) -> None:
    repository.cut_jar_at = len(JAR) // 2
    with pytest.raises(FetchError, match="Maven could not fetch the blob"):
        fetch(repository, tmp_path)
    assert list((tmp_path / "cache").iterdir()) == []
    assert not list((tmp_path / "m2").glob(f"{ARTIFACT}.jar"))
