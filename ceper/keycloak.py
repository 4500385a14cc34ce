"""A local Keycloak for the interoperability test: fetching the distribution once, running it in dev mode.

The distribution pinned in `deploy/keycloak/pom.xml` is copied from Maven Central with Maven (as the Kafka
jars are) and unpacked under `${XDG_CACHE_HOME:-~/.cache}/ceper-supply/keycloak-<pom hash>/`. Each run gets
a home of its own (configuration, build output and data; the jars are shared through a symlink), so two
test sessions never write into one directory, and imports the realm files it is given.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from ceper.broker import free_port, parse_java_major
from ceper.maven import FetchError, default_cache_dir, fetch_once, pom_hash

KEYCLOAK_VERSION = "26.5.6"
MIN_JAVA = 21
POM_PATH = Path(__file__).resolve().parents[1] / "deploy" / "keycloak" / "pom.xml"
REALM_PATH = Path(__file__).resolve().parents[1] / "deploy" / "keycloak" / "ceper-realm.json"
JDK_HINT = "Keycloak needs Java 21 or newer: install one under /usr/lib/jvm, or point CEPER_KEYCLOAK_JAVA_HOME at it"


class KeycloakError(RuntimeError):
    """Keycloak could not be fetched or started; the message says what to do next."""


def _java_major(java_home: Path) -> int | None:
    java = java_home / "bin" / "java"
    if not java.is_file():
        return None
    try:
        done = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_java_major(done.stderr + done.stdout)


def java_home() -> Path:
    """A JDK of Java 21+: CEPER_KEYCLOAK_JAVA_HOME, else JAVA_HOME, else the newest under /usr/lib/jvm."""
    for variable in ("CEPER_KEYCLOAK_JAVA_HOME", "JAVA_HOME"):
        if value := os.environ.get(variable):
            major = _java_major(Path(value))
            if major is not None and major >= MIN_JAVA:
                return Path(value)
    found = [(major, home) for home in Path("/usr/lib/jvm").glob("*") if (major := _java_major(home)) is not None]
    for major, home in sorted(found, reverse=True):
        if major >= MIN_JAVA:
            return home
    raise KeycloakError(f"no Java {MIN_JAVA}+ found (seen: {sorted({m for m, _ in found}) or 'none'}): {JDK_HINT}")


def _complete(folder: Path) -> bool:
    return (folder / "bin" / "kc.sh").is_file() and (folder / "lib" / "quarkus-run.jar").is_file()


def _unpack(downloaded: Path, into: Path) -> None:
    archives = list(downloaded.glob("keycloak-quarkus-dist-*.tar.gz"))
    if not archives:
        raise FetchError(f"Maven fetched no Keycloak archive (keycloak-quarkus-dist-*.tar.gz) into {downloaded}")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(into, filter="data")


def distribution(cache_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """The unpacked Keycloak distribution, fetched with Maven once into the cache."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    home = f"keycloak-{KEYCLOAK_VERSION}"
    try:
        target = fetch_once(
            POM_PATH,
            base / f"keycloak-{pom_hash(POM_PATH)}",
            what=f"Keycloak {KEYCLOAK_VERSION}",
            complete=lambda folder: _complete(folder / home),
            copy_options=["-DexcludeTransitive=true"],
            unpack=_unpack,
            timeout_s=1200,
            again="run `ceper keycloak fetch` again",
            progress=progress,
        )
    except FetchError as error:
        raise KeycloakError(str(error)) from None
    return target / home


@contextmanager
def _build_lock(dist: Path, exclusive: bool) -> Iterator[None]:
    """Guards the distribution's build output (lib/quarkus) between concurrent test sessions."""
    with open(dist.parent / ".build.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_signature(folder: Path) -> set[tuple[str, int]]:
    return {(f.name, f.stat().st_size) for f in folder.iterdir() if f.is_file()}


class LocalKeycloak:
    """One Keycloak in dev mode (in-memory database) on free loopback ports, with its own home directory."""

    def __init__(self, dist: Path, root: Path, realm_files: Sequence[Path] = (REALM_PATH,), heap_mb: int = 768) -> None:
        self.dist = dist
        self.root = root
        self.home = root / "keycloak"
        self.realm_files = list(realm_files)
        self.heap_mb = heap_mb
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = root / "keycloak.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def realm_url(self, realm: str) -> str:
        return f"{self.url}/realms/{realm}"

    def _prepare_home(self) -> None:
        if self.home.exists():
            shutil.rmtree(self.home)
        (self.home / "lib").mkdir(parents=True)
        for part in ("bin", "conf", "themes", "providers"):
            shutil.copytree(self.dist / part, self.home / part, symlinks=True)
        # Dev mode rewrites lib/quarkus (its build output): each home gets a copy; the jars stay shared.
        shutil.copytree(self.dist / "lib" / "app", self.home / "lib" / "app", symlinks=True)
        with _build_lock(self.dist, exclusive=False):
            shutil.copytree(self.dist / "lib" / "quarkus", self.home / "lib" / "quarkus", symlinks=True)
        shutil.copy2(self.dist / "lib" / "quarkus-run.jar", self.home / "lib" / "quarkus-run.jar")
        (self.home / "lib" / "lib").symlink_to(self.dist / "lib" / "lib", target_is_directory=True)
        imports = self.home / "data" / "import"
        imports.mkdir(parents=True)
        for realm in self.realm_files:
            shutil.copy2(realm, imports / realm.name)

    def start(self, realm: str = "ceper", timeout: float = 600) -> None:
        java = java_home()
        self._prepare_home()
        self.port, management_port = free_port(), free_port()
        env = {
            **os.environ,
            "JAVA_HOME": str(java),
            "JAVA_OPTS_KC_HEAP": f"-Xms64m -Xmx{self.heap_mb}m",
            "KC_LOG_CONSOLE_COLOR": "false",
        }
        command = [
            str(self.home / "bin" / "kc.sh"), "start-dev", "--db=dev-mem", "--import-realm",
            "--http-host=127.0.0.1", f"--http-port={self.port}", f"--http-management-port={management_port}",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_ready(realm, timeout)
        except BaseException:
            self.stop()  # a failed or interrupted start leaves nothing running
            raise

    def _wait_ready(self, realm: str, timeout: float) -> None:
        assert self.process is not None
        discovery = f"{self.realm_url(realm)}/.well-known/openid-configuration"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise KeycloakError(f"Keycloak exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(discovery, timeout=2).status_code == 200:
                    self._share_build()
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise KeycloakError(f"Keycloak did not answer within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(1)

    def _share_build(self) -> None:
        """The first start builds dev mode's output (about half a minute); keep it in the cache for later runs."""
        built, cached = self.home / "lib" / "quarkus", self.dist / "lib" / "quarkus"
        if _build_signature(built) == _build_signature(cached):
            return
        with _build_lock(self.dist, exclusive=True):
            staging = Path(tempfile.mkdtemp(prefix=".quarkus-", dir=cached.parent))
            shutil.copytree(built, staging / "quarkus", symlinks=True)
            old = cached.parent / f".quarkus-old-{os.getpid()}"
            cached.rename(old)
            (staging / "quarkus").rename(cached)
            shutil.rmtree(old, ignore_errors=True)
            shutil.rmtree(staging, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # Its own process group: kc.sh and the JVM it started, and nothing else.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
