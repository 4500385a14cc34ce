"""Fetching what a pom pins from Maven Central into the user's cache, once: the Kafka broker's jars and the Keycloak
distribution.

Maven copies the pom's dependencies into a staging folder beside the target, refusing any whose checksum does not
match the repository's; an optional step unpacks them there; the finished folder is then renamed into place. So a
fetch that fails, is refused or is interrupted leaves nothing behind, and never a target that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

COPY_DEPENDENCIES = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
LOG_TAIL_LINES = 20


class FetchError(RuntimeError):
    """Maven could not fetch the artifacts, or they are not what was expected; the message says what to do next."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ceper-supply"


def pom_hash(pom: Path) -> str:
    """Keys the cache folder: a changed pom fetches afresh and never mixes artifacts of two versions."""
    return hashlib.sha256(pom.read_bytes()).hexdigest()[:12]


def fetch_once(
    pom: Path,
    target: Path,
    *,
    what: str,
    complete: Callable[[Path], bool],
    copy_options: Sequence[str] = (),
    unpack: Callable[[Path, Path], None] | None = None,
    timeout_s: float = 900,
    again: str = "try again",
    maven_options: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> Path:
    """`target`, holding `what` the pom pins: fetched with Maven unless `complete(target)` already.

    `copy_options` go to the copy-dependencies goal; `unpack(downloaded, into)` turns the downloaded artifacts into
    the folder's content (without it, the artifacts are the content); `maven_options` go to Maven itself (a
    settings file, another local repository); `again` says how to try again after a failure.
    """
    if complete(target):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FetchError(f"Maven not found: install it (apt-get install maven) to fetch {what} once into {target}")
    if progress is not None:
        progress(f"Fetching {what} with Maven into {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    downloaded, unpacked = staging / "download", staging / "unpacked"
    try:
        # --strict-checksums: an artifact whose checksum does not match the repository's fails the fetch.
        command = [
            mvn, "-B", "-q", "--strict-checksums", "-Dstyle.color=never", *maven_options, "-f", str(pom),
            COPY_DEPENDENCIES, *copy_options, f"-DoutputDirectory={downloaded}",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise FetchError(
                f"Maven took over {timeout_s / 60:g} minutes to fetch {what}: check access to Maven Central and {again}"
            ) from None
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise FetchError(
                f"Maven could not fetch {what} (exit {done.returncode}): check access to Maven Central "
                f"(or ~/.m2/settings.xml) and {again}.\n{tail}"
            )
        if unpack is None:
            finished = downloaded
        else:
            unpack(downloaded, unpacked)
            finished = unpacked
        if not complete(finished):
            raise FetchError(f"Maven fetched {what}, but not all that {pom.name} pins: {again}")
        try:
            finished.rename(target)
        except OSError:
            # Another process finished the same fetch first; its copy is as good as ours.
            if not complete(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
