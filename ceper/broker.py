"""The local Apache Kafka broker: fetching its jars, formatting its storage, starting and stopping it.

One real single-node KRaft broker (broker and controller in one JVM) for developers, tests and benchmarks,
started from the Maven Central artifacts pinned in `deploy/kafka/pom.xml`. Never used by a running service:
what services need of the broker (clients, topics) is in `shared/kafka.py` and `shared/topics.py`.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from ceper.maven import FetchError, default_cache_dir, fetch_once, pom_hash
from shared import kafka
from shared.kafka import BrokerError

KAFKA_VERSION = "4.4.0"
MIN_JAVA = 17
POM_PATH = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "pom.xml"
JDK_HINT = "install a JDK (apt-get install openjdk-17-jre-headless) or point JAVA_HOME at one"
LOG_TAIL_LINES = 40

T = TypeVar("T")


# --- jars -------------------------------------------------------------------------------------------


def java_executable() -> str:
    """The `java` to run Kafka with (JAVA_HOME first, then PATH), checked to be Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if java is None:
        raise BrokerError(f"Java {MIN_JAVA}+ not found: {JDK_HINT}")
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"Could not run {java} -version ({exc}): {JDK_HINT}") from None
    major = parse_java_major(done.stderr + done.stdout)
    if major is None:
        raise BrokerError(f"Could not tell the version of {java}: {JDK_HINT}")
    if major < MIN_JAVA:
        raise BrokerError(f"Java {MIN_JAVA}+ needed, found Java {major} at {java}: {JDK_HINT}")
    return java


def parse_java_major(version_output: str) -> int | None:
    """Major version from `java -version` output: `"17.0.15"` -> 17, old style `"1.8.0_392"` -> 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        return int(match.group(2))
    return major


def _jars_complete(folder: Path) -> bool:
    return any(folder.glob("kafka_2.13-*.jar")) and any(folder.glob("kafka-clients-*.jar"))


def kafka_jars(cache_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Folder holding the broker's runtime jars, fetched once with Maven into `<cache_dir>/kafka-<pom hash>/`.

    `cache_dir` defaults to `${XDG_CACHE_HOME:-~/.cache}/ceper-supply`. Keying on the pom's hash means
    a version bump fetches afresh and never mixes jars of two versions.
    """
    java_executable()
    if not POM_PATH.is_file():
        raise BrokerError(f"{POM_PATH} not found: run from a checkout of the repository")
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        return fetch_once(
            POM_PATH,
            base / f"kafka-{pom_hash(POM_PATH)}",
            what=f"the Apache Kafka {KAFKA_VERSION} jars",
            complete=_jars_complete,
            copy_options=["-DincludeScope=runtime"],
            again="run `ceper kafka fetch` again",
            progress=progress,
        )
    except FetchError as error:
        raise BrokerError(str(error)) from None


# --- configuration ----------------------------------------------------------------------------------


def new_cluster_id() -> str:
    """16 random bytes as URL-safe base64 without padding, the form `kafka-storage random-uuid` prints."""
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        # A leading '-' would be read as an option on the StorageTool command line.
        if not cluster_id.startswith("-"):
            return cluster_id


def broker_properties(port: int, controller_port: int, log_dir: Path) -> dict[str, str]:
    """server.properties of a single node that is both broker and KRaft controller."""
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        # Internal topics default to 3 replicas and min ISR 2, which one node can never satisfy.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # After an unclean exit a restarted broker waits out its old session (9 s by default).
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "4000",
        # The 3 s default delays every consumer group join in tests.
        "group.initial.rebalance.delay.ms": "0",
        # The cleaner's 128 MiB default buffer would take a quarter of a 512 MiB heap.
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        # Topics are created explicitly (ensure_topics), so a typo fails instead of making a topic.
        "auto.create.topics.enable": "false",
        "num.partitions": "6",
        # Events are the record of what happened: keep them so services can replay.
        "log.retention.ms": "-1",
    }


def render_properties(properties: dict[str, str]) -> str:
    # Java properties files treat a backslash as an escape character.
    lines = [key + "=" + value.replace("\\", "\\\\") for key, value in properties.items()]
    header = "# Written by ceper/broker.py on every start; change broker_properties() instead."
    return "\n".join([header, *lines]) + "\n"


# --- the broker process -----------------------------------------------------------------------------


_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """For `preexec_fn`: the kernel sends the child `signum` when the thread that started it ends, so a
    tool killed outright (SIGKILL) leaves no broker, database or service behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the JVM's server sockets: connections in TIME_WAIT after a restart don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _process_cmdline(pid: int) -> str | None:
    """The command line of a process, or None if it is gone or exiting (then Linux shows an empty one)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            raw = proc.read_bytes()
        except OSError:
            return None
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None
    try:
        done = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() or None


def _process_gone(pid: int) -> bool:
    """True once a process has exited; an unreaped zombie counts as exited."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    if Path("/proc/self").exists():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        state = re.search(r"^State:\s+(\S)", status, re.MULTILINE)
        threads = re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE)
        # While a JVM exits, its main thread may be a zombie already with other threads still running.
        return bool(state and state.group(1) == "Z" and (threads is None or int(threads.group(1)) <= 1))
    try:
        done = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    except OSError:
        return False
    return not done.stdout.strip() or done.stdout.strip().startswith("Z")


def _tail_text(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _run_sync(make_coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when the caller sits inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


class LocalKafka:
    """A single-node KRaft broker whose storage, config, log and pid file live in `data_dir`.

    The data dir keeps topics across restarts; it is tied to the controller port it was formatted with.
    """

    def __init__(
        self, data_dir: Path, port: int = 9092, controller_port: int = 9093, heap_mb: int = 512, *, die_with_parent: bool = False
    ):
        if port == controller_port:
            raise BrokerError(f"Kafka's broker and controller ports must differ (both are {port})")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.heap_mb = heap_mb
        # `ceper kafka start` leaves the broker running on purpose; a tool that owns its broker sets this.
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "data"

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def cluster_file(self) -> Path:
        return self.data_dir / "cluster.json"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def pid(self) -> int | None:
        """Pid of this data dir's running broker, or None; a stale pid file is removed on the way."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if _process_gone(pid):
            self.pid_path.unlink(missing_ok=True)
            return None
        cmdline = _process_cmdline(pid)
        # No command line while the process exists: it is in the middle of exiting, still ours.
        if cmdline is None:
            return pid
        # The pid may have been reused by an unrelated process since the broker died.
        if "kafka.Kafka" not in cmdline or str(self.properties_path) not in cmdline:
            self.pid_path.unlink(missing_ok=True)
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid is not None

    @property
    def cluster_id(self) -> str | None:
        try:
            return str(json.loads(self.cluster_file.read_text())["cluster_id"])
        except (OSError, ValueError, KeyError):
            return None

    def status(self) -> dict[str, Any]:
        pid = self.pid
        return {
            "running": pid is not None,
            "pid": pid,
            "bootstrap": self.bootstrap,
            "controller_port": self.controller_port,
            "data_dir": str(self.data_dir),
            "log": str(self.log_path),
            "cluster_id": self.cluster_id,
            "kafka_version": KAFKA_VERSION,
        }

    def start(self, timeout: float = 90) -> None:
        """Start the broker and wait until it answers; a no-op if it already runs."""
        if self.is_running():
            return
        self._check_formatted_ports()
        for port in (self.port, self.controller_port):
            if not _port_is_free(port):
                raise BrokerError(
                    f"Port {port} on 127.0.0.1 is already in use: stop whatever listens there "
                    f"(`ss -ltnp 'sport = :{port}'` shows it) or use other ports"
                )
        jars = kafka_jars()
        java = java_executable()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text(render_properties(broker_properties(self.port, self.controller_port, self.log_dir)))
        self._format(java, jars)

        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_name("broker.log.1"))
        command = [
            java, f"-Xms{self.heap_mb}m", f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ",
            # Each client and server config is dumped in full at INFO; server.properties says the same.
            "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config.AbstractConfig=warn",
            "-cp", str(jars / "*"), "kafka.Kafka", str(self.properties_path),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            # Own session: Ctrl-C in the terminal that ran `ceper kafka start` must not reach the broker.
            self._proc = subprocess.Popen(
                command, cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent if self.die_with_parent else None,
            )  # fmt: skip
        self.pid_path.write_text(f"{self._proc.pid}\n")

        proc = self._proc
        try:
            _run_sync(lambda: wait_until_ready(self.bootstrap, timeout, is_alive=lambda: proc.poll() is None))
        except BaseException as exc:
            exited = proc.poll() is not None
            # A broker that never became ready is stopped, so a failed start leaves nothing behind.
            self.stop(timeout=10)
            if not isinstance(exc, BrokerError):
                raise
            what = f"exited with code {proc.returncode}" if exited else f"did not answer within {timeout:g} s"
            raise BrokerError(f"Kafka {what}; full log in {self.log_path}, last lines:\n{self.log_tail()}") from None

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM (Kafka's shutdown hook flushes the logs), SIGKILL after `timeout`; True if it was running."""
        pid = self.pid
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 10)
        self.pid_path.unlink(missing_ok=True)
        self._proc = None
        return True

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open(errors="replace") as log:
                return "".join(deque(log, maxlen=lines)).rstrip()
        except OSError:
            return "(no broker log)"

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _process_gone(pid):
                return True
            time.sleep(0.1)
        return _process_gone(pid)

    def _check_formatted_ports(self) -> None:
        if not self.cluster_file.exists():
            if (self.log_dir / "meta.properties").exists():
                raise BrokerError(
                    f"{self.log_dir} holds Kafka data but {self.cluster_file} is missing: "
                    f"delete {self.data_dir} to start with an empty broker"
                )
            return
        try:
            formatted = json.loads(self.cluster_file.read_text())
            formatted_port = int(formatted["controller_port"])
        except (OSError, ValueError, KeyError) as exc:
            raise BrokerError(
                f"{self.cluster_file} is unreadable ({exc}): delete {self.data_dir} to start with an empty broker"
            ) from None
        # The controller's address is written into the KRaft metadata at format time; the broker
        # port is only registered at each start, so that one may change.
        if formatted_port != self.controller_port:
            raise BrokerError(
                f"{self.data_dir} was formatted for controller port {formatted_port}, not "
                f"{self.controller_port}: use the old ports again, or delete {self.data_dir} "
                "(its topics and events go with it)"
            )

    def _format(self, java: str, jars: Path) -> None:
        cluster_id = self.cluster_id
        if cluster_id is not None and (self.log_dir / "meta.properties").exists():
            return
        if cluster_id is None:
            cluster_id = new_cluster_id()
            # Written before formatting, so a format cut short is retried with the same id.
            record = {"cluster_id": cluster_id, "controller_port": self.controller_port}
            self.cluster_file.write_text(json.dumps(record, indent=2) + "\n")
        command = [
            java, "-Xmx256m", "-cp", str(jars / "*"), "kafka.tools.StorageTool", "format",
            "-t", cluster_id, "-c", str(self.properties_path), "--standalone", "-g",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise BrokerError(f"Formatting Kafka storage in {self.log_dir} took over 2 minutes") from None
        if done.returncode != 0:
            raise BrokerError(
                f"Formatting Kafka storage in {self.log_dir} failed (exit {done.returncode}); "
                f"delete {self.data_dir} to start afresh. Output:\n{_tail_text(done.stdout + done.stderr)}"
            )


# --- talking to a broker ----------------------------------------------------------------------------


def _host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    first = first.split("://", 1)[-1]
    host, _, port = first.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _answers(bootstrap: str) -> None:
    host, port = _host_port(bootstrap)
    # A bare TCP connect first: cheap, and spares the log aiokafka's connection errors while the JVM boots.
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    await writer.wait_closed()
    admin = kafka.admin(bootstrap, "ceper-kafka-ready", request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        if not cluster.get("brokers"):
            raise ConnectionError("no broker registered yet")
    finally:
        await admin.close()


async def wait_until_ready(bootstrap: str, timeout: float, is_alive: Callable[[], bool] | None = None) -> None:
    """Wait until a broker at `bootstrap` answers a metadata request (an open port is not enough).

    `is_alive` is polled between attempts so a crashed broker fails at once instead of at the timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error = "no answer yet"
    while True:
        if is_alive is not None and not is_alive():
            raise BrokerError(f"Kafka exited before {bootstrap} answered")
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise BrokerError(f"Kafka at {bootstrap} did not answer within {timeout:g} s ({last_error})")
        try:
            await asyncio.wait_for(_answers(bootstrap), timeout=min(remaining, 10))
            return
        except Exception as exc:
            last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        await asyncio.sleep(min(0.2, max(deadline - loop.time(), 0)))
