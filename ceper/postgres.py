"""A throw-away PostgreSQL server run from the system's binaries (no Docker), for the tests and `ceper chaos`.

The postmaster is a direct child of the process that starts it (not daemonised by pg_ctl): it can be
stopped, crashed and started again on the same port, and the kernel stops it when its parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg

from ceper.broker import die_with_parent, free_port

SUPERUSER = "postgres"
HOST = "127.0.0.1"
INSTALL_HINT = "run `make test`, or `bash deploy/install-system-deps.sh` as root, to install it"
BINARIES = ("initdb", "pg_ctl", "postgres")
# Durability is worthless for a throw-away cluster: these settings buy test speed. With `synchronous_commit`
# off a commit is answered before its WAL is written, so a crash of the server loses the last commits.
FAST_SETTINGS = {
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
# For a server that is crashed on purpose (`ceper chaos`): a commit answered is in the operating system's
# hands, so killing the server loses nothing; only a crash of the machine would, which nobody stages.
CRASH_SAFE_SETTINGS = {"max_connections": "200", "fsync": "off", "full_page_writes": "off"}
# How PostgreSQL reads its stop signals.
STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_BIND_FAILURES = ("could not bind", "already in use")


class PostgresError(RuntimeError):
    """The server could not be set up, started or stopped; the message says why and what to do."""


def find_server_binaries() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: from PATH, else the newest Debian install."""
    candidates = []
    if on_path := shutil.which("pg_ctl"):
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major_version, reverse=True)
    for directory in candidates:
        if all(os.access(directory / binary, os.X_OK) for binary in BINARIES):
            return directory
    return None


def _major_version(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))


def _first_unreachable(directory: Path, account: pwd.struct_passwd) -> Path | None:
    """The first directory on the way to `directory` that `account` may not enter, or None."""
    for step in reversed([directory.resolve(), *directory.resolve().parents]):
        mode = step.stat()
        if mode.st_uid == account.pw_uid:
            allowed = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid == account.pw_gid:
            allowed = mode.st_mode & stat.S_IXGRP
        else:
            allowed = mode.st_mode & stat.S_IXOTH
        if not allowed:
            return step
    return None


def quoted_name(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r} must match {_DATABASE_NAME.pattern}")
    return f'"{name}"'


class LocalPostgres:
    """One PostgreSQL cluster in `root` (data, socket, log): 127.0.0.1, trust auth, superuser `postgres`.

    As root, the server runs as the `postgres` OS user (PostgreSQL refuses root).
    """

    def __init__(self, root: Path, *, settings: dict[str, str] | None = None) -> None:
        bin_dir = find_server_binaries()
        if bin_dir is None:
            raise PostgresError(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under "
                f"/usr/lib/postgresql/*/bin: {INSTALL_HINT}"
            )
        self.bin_dir = bin_dir
        self.root = Path(root)
        self.data_dir = self.root / "data"
        self.socket_dir = self.root
        self.log_path = self.root / "server.log"
        self.host = HOST
        self.user = SUPERUSER
        self.port: int | None = None
        self.settings = dict(FAST_SETTINGS if settings is None else settings)
        self._process: subprocess.Popen[bytes] | None = None
        self._account: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._account = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PostgresError(f"no OS user {SUPERUSER!r} to run PostgreSQL as: {INSTALL_HINT}") from None
        # Stray PG* variables from the caller's shell must not redirect the tools.
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}

    # --- the cluster ----------------------------------------------------------------------------------------

    def init(self) -> None:
        """initdb into `root/data`, with this server's settings appended to postgresql.conf."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._account is not None:
            blocked = _first_unreachable(self.root.parent, self._account)
            if blocked is not None:
                raise PostgresError(
                    f"the OS user {SUPERUSER!r} cannot enter {blocked}, so it cannot reach {self.root}: "
                    "choose a directory it can reach (e.g. under /tmp)"
                )
            os.chown(self.root, self._account.pw_uid, self._account.pw_gid)
        command = [
            str(self.bin_dir / "initdb"), "--pgdata", str(self.data_dir), "--username", SUPERUSER, "--auth", "trust",
            "--encoding", "UTF8", "--no-locale", "--no-sync",
        ]  # fmt: skip
        user, group, groups = self._owner()
        done = subprocess.run(
            command, cwd=self.root, env=self.env, capture_output=True, text=True, user=user, group=group, extra_groups=groups
        )
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        settings = {"listen_addresses": HOST, "unix_socket_directories": str(self.socket_dir), **self.settings}
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            for key, value in settings.items():
                escaped = value.replace("'", "''")
                conf.write(f"{key} = '{escaped}'\n")

    def start(self, port: int | None = None, timeout: float = 60) -> int:
        """Start the server and wait until it accepts connections; returns its port.

        Without `port`, a free one is chosen (and another one tried if a process took it meanwhile). With
        it (a restart), the server must come back there, since clients keep their URLs.
        """
        if self.running:
            raise PostgresError(f"PostgreSQL in {self.data_dir} is already running (pid {self.pid})")
        failures: list[str] = []
        for _attempt in range(1 if port is not None else 5):
            chosen = port if port is not None else free_port()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn(chosen)
            problem = self._wait_ready(timeout)
            if problem is None:
                self.port = chosen
                return chosen
            log = self._log_since(log_start)
            failures.append(f"{problem}\n{log}")
            if not any(text in log for text in _BIND_FAILURES):
                break
        raise PostgresError(f"PostgreSQL did not start: {failures[-1]}")

    def stop(self, mode: str = "fast", timeout: float = 30) -> bool:
        """Stop the server: `fast` (SIGINT: disconnect clients, checkpoint), `immediate` (SIGQUIT: like a
        crash; the next start recovers from the WAL) or `smart`; SIGKILL after `timeout`. True if it ran."""
        process = self._process
        if process is None or process.poll() is not None:
            self._process = None
            return False
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(STOP_SIGNALS[mode])
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(10)
        self._process = None
        return True

    def remove(self) -> None:
        """Stop the server if it runs and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def _owner(self) -> tuple[int | None, int | None, list[int] | None]:
        """User, group and supplementary groups to run the server as: the `postgres` account when we are root."""
        if self._account is None:
            return None, None, None
        return self._account.pw_uid, self._account.pw_gid, []

    def _spawn(self, port: int) -> None:
        command = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(port)]
        user, group, groups = self._owner()
        with self.log_path.open("ab") as log:
            # Own session, so Ctrl-C in a terminal reaches only the tool, which stops the server in order;
            # SIGQUIT when the tool dies outright: an immediate shutdown, nothing left behind.
            self._process = subprocess.Popen(
                command, cwd=self.root, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=lambda: die_with_parent(signal.SIGQUIT), user=user, group=group,
                extra_groups=groups,
            )  # fmt: skip

    def _wait_ready(self, timeout: float) -> str | None:
        """None once the postmaster says it is ready (postmaster.pid's status line), else what went wrong."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                return f"the server exited with code {code}"
            with contextlib.suppress(OSError, IndexError):
                lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
                if int(lines[0]) == self._process.pid and lines[7].strip() == "ready":
                    return None
            time.sleep(0.05)
        self.stop("immediate", timeout=10)
        return f"the server was not ready within {timeout:g} s"

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(deque(text.splitlines(), maxlen=30))

    # --- databases ------------------------------------------------------------------------------------------

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a unique name unless given) and return its SQLAlchemy async URL."""
        name = name or f"test_{uuid.uuid4().hex[:16]}"
        self.admin(f"CREATE DATABASE {quoted_name(name)}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database by name (or by the URL `create_database` returned), closing its connections."""
        name = name.rsplit("/", 1)[-1]
        self.admin(f"DROP DATABASE IF EXISTS {quoted_name(name)} WITH (FORCE)")

    def admin(self, sql: str) -> None:
        """Run one statement in the `postgres` database."""
        # Callers are often inside a running event loop (async tests), so asyncpg gets a thread of its own.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, self._execute(sql)).result()

    async def _execute(self, sql: str) -> None:
        if self.port is None:
            raise PostgresError("PostgreSQL is not started")
        connection = await asyncpg.connect(host=self.host, port=self.port, user=self.user, database="postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()
