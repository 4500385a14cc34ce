"""The platform `ceper chaos` runs: its own Kafka broker and PostgreSQL server, and every domain service as
separate OS processes, several replicas each, all under one run directory. The services trust a throw-away
issuer of the run's own, whose admin the run's clients call as.

Processes are started from the main thread only: each gets its own session (a terminal's Ctrl-C reaches
the chaos process, which stops them in order) and a parent-death signal (if the chaos process is killed
outright, the kernel stops them). `close()` stops whatever is still running, whatever happened before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ceper.access import IssuerAuth, LocalIssuer
from ceper.broker import LocalKafka, die_with_parent, free_port, kafka_jars
from ceper.postgres import CRASH_SAFE_SETTINGS, LocalPostgres, PostgresError
from shared.kafka import BrokerError
from shared.settings import DOMAIN_SERVICES, Settings
from shared.topics import ensure_topics, platform_topics

PARTITIONS = 6
START_ATTEMPTS = 3
READY_TIMEOUT_S = 240.0
# How long after a dependency we took down is back that a replica failing to start is still put down to it.
DEPENDENCY_GRACE_S = 20.0


class PlatformError(RuntimeError):
    """The platform could not be brought up; the message says what failed."""


@dataclass
class Replica:
    """One process of a service: a fixed port, so clients and the other replica find it again after a restart."""

    service: str
    index: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    # Set while we hold it down (killed or stopped, restart pending): its absence is no crash then.
    held_down: bool = False
    restart_at: float | None = None  # when the supervisor brings it back after it exited by itself
    backoff_s: float = 1.0
    starts: int = 0
    stop_deadline: float | None = None  # a graceful stop under way is ended by SIGKILL after this

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


@dataclass
class Exit:
    """A replica that exited without being told to."""

    replica: str
    code: int | None
    at_s: float
    excused: str | None  # the dependency we had taken down at the time, if any


@dataclass
class Outage:
    what: str  # "broker" or "postgres"
    since: float
    until: float | None = None


@dataclass
class Platform:
    root: Path
    replicas_per_service: int
    log: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    broker: LocalKafka | None = None
    postgres: LocalPostgres | None = None
    database_urls: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    # Restarts of the broker and the database run here, so the faults and the supervision go on meanwhile. One
    # thread for the whole run: a child's parent-death signal fires when the thread that started it ends.
    launcher: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaos-launcher")
    )
    # The issuer every replica trusts; its JWKS is served on loopback from start() until close().
    issuer: LocalIssuer = field(default_factory=LocalIssuer)
    jwks_url: str | None = None
    _jwks: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _restarting: concurrent.futures.Future[None] | None = None
    _closing: threading.Event = field(default_factory=threading.Event)

    # --- bringing it up -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Broker, PostgreSQL, one database per service, the topics, then every replica; waits until all are ready."""
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.jwks_url = self._jwks.enter_context(self.issuer.serve())
        try:
            kafka_jars()
        except BrokerError as exc:
            raise PlatformError(str(exc)) from None
        self.broker = self._start_broker()
        self.postgres = LocalPostgres(self.root / "postgres", settings=CRASH_SAFE_SETTINGS)
        self.postgres.init()
        self.postgres.start()
        for service in DOMAIN_SERVICES:
            self.database_urls[service] = self.postgres.create_database(service)
        self.log(f"Kafka on {self.broker.bootstrap}, PostgreSQL on 127.0.0.1:{self.postgres.port}")
        asyncio.run(ensure_topics(self.broker.bootstrap, platform_topics(self.settings), partitions=PARTITIONS))
        used: set[int] = {self.broker.port, self.broker.controller_port, self.postgres.port or 0}
        for service in DOMAIN_SERVICES:
            for index in range(1, self.replicas_per_service + 1):
                port = free_port()
                while port in used:
                    port = free_port()
                used.add(port)
                self.replicas.append(Replica(service, index, port, self.root / "logs" / f"{service}-{index}.log"))
        # All replicas at once, as a deployment starts them: two of a service meet at their migrations.
        for replica in self.replicas:
            self.spawn(replica)
        self.wait_ready(READY_TIMEOUT_S)
        self.log(f"{len(self.replicas)} replicas ready: " + ", ".join(f"{r.name} :{r.port}" for r in self.replicas))

    def _start_broker(self) -> LocalKafka:
        failures: list[str] = []
        for attempt in range(START_ATTEMPTS):
            port, controller = free_port(), free_port()
            if port == controller:
                continue
            # A fresh directory each attempt: a data dir is tied to the controller port it was formatted with.
            broker = LocalKafka(self.root / f"kafka-{attempt}", port=port, controller_port=controller, die_with_parent=True)
            try:
                broker.start()
            except BrokerError as exc:  # another process may take a free port before the JVM binds it
                failures.append(str(exc))
                continue
            return broker
        raise PlatformError(f"Kafka did not start: {failures[-1] if failures else 'no free ports'}")

    @property
    def settings(self) -> Settings:
        """Settings of a client of this platform (the checks read topics and databases with them)."""
        assert self.broker is not None
        return Settings(
            kafka_bootstrap_servers=self.broker.bootstrap,
            kafka_topic_prefix="",
            kafka_partitions=PARTITIONS,
            var_dir=self.root / "var",
            log_json=False,
            **{f"{service}_database_url": url for service, url in self.database_urls.items()},  # type: ignore[arg-type]
        )

    def admin(self) -> IssuerAuth:
        """Calls as the admin of the run's issuer: a fresh token on every request, so a long run never sees one expire."""
        return self.issuer.auth(roles=["admin"], subject="ceper-chaos")

    def _environment(self) -> dict[str, str]:
        assert self.broker is not None and self.jwks_url is not None
        # The caller's CEPER_… variables must not leak into the services: this platform is configured here alone.
        env = {key: value for key, value in os.environ.items() if not key.startswith("CEPER_")}
        env.update(
            {
                "CEPER_ENV": "dev",
                "CEPER_VAR_DIR": str(self.root / "var"),
                "CEPER_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
                "CEPER_KAFKA_PARTITIONS": str(PARTITIONS),
                "CEPER_LOG_LEVEL": "INFO",
                "CEPER_LOG_JSON": "true",
                "CEPER_OUTBOX_POLL_INTERVAL_S": "0.5",
                "CEPER_ORDERS_WEBHOOK_POLL_INTERVAL_S": "0.5",
                # The run's webhook receiver listens on loopback, which orders trusts only when told to.
                "CEPER_ORDERS_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
                "PYTHONUNBUFFERED": "1",
                **self.issuer.env(self.jwks_url),
                **{f"CEPER_{service.upper()}_DATABASE_URL": url for service, url in self.database_urls.items()},
            }
        )
        return env

    # --- one replica ----------------------------------------------------------------------------------------

    def spawn(self, replica: Replica) -> None:
        command = [
            sys.executable, "-m", "uvicorn", "--factory", f"services.{replica.service}.app:create_app",
            "--host", "127.0.0.1", "--port", str(replica.port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        with replica.log_path.open("ab") as out:
            out.write(f"--- start {replica.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            replica.process = subprocess.Popen(
                command, cwd=self.root, env=self._environment(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
            )  # fmt: skip
        replica.starts += 1
        replica.held_down = False
        replica.restart_at = None
        replica.stop_deadline = None

    def kill(self, replica: Replica) -> None:
        """SIGKILL: no shutdown hook runs, the group sees the member only when its session times out."""
        replica.held_down = True
        if replica.process is not None and replica.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(replica.process.pid, signal.SIGKILL)
            replica.process.wait(10)

    def stop(self, replica: Replica, grace_s: float = 30) -> None:
        """SIGTERM: uvicorn's graceful shutdown; the consumer leaves its group, which rebalances at once. Returns at
        once: `finish_stopping` ends it, by SIGKILL once `grace_s` have passed."""
        replica.held_down = True
        replica.stop_deadline = time.monotonic() + grace_s
        if replica.process is not None and replica.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                replica.process.send_signal(signal.SIGTERM)

    def finish_stopping(self, replica: Replica) -> bool:
        """True once a stopped replica's process is gone; kills it if it outlived its grace."""
        process = replica.process
        if process is None or process.poll() is not None:
            return True
        if replica.stop_deadline is not None and time.monotonic() > replica.stop_deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
            return True
        return False

    def replica(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    def urls(self, service: str) -> list[str]:
        return [r.url for r in self.replicas if r.service == service]

    # --- the broker and the database ------------------------------------------------------------------------

    def restart_broker(self, crash: bool, down_s: float) -> None:
        """Takes the broker down (SIGTERM, or SIGKILL: a crash) and brings it back after `down_s`, on the same
        ports and data directory, in the background."""
        self._restarting = self.launcher.submit(self._restart_broker, crash, down_s)

    def restart_postgres(self, down_s: float) -> None:
        """An immediate shutdown (like a crash: the next start recovers from the WAL), back after `down_s` on
        the same port, in the background."""
        self._restarting = self.launcher.submit(self._restart_postgres, down_s)

    @property
    def restarting(self) -> bool:
        """A broker or database restart is under way."""
        return self._restarting is not None and not self._restarting.done()

    def _restart_broker(self, crash: bool, down_s: float) -> None:
        assert self.broker is not None
        self.outages.append(Outage("broker", self.elapsed()))
        started = time.monotonic()
        pid = self.broker.pid
        if crash and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.broker.stop(timeout=10 if crash else 30)
        how = "SIGKILL" if crash else f"SIGTERM, stopped in {time.monotonic() - started:.1f} s"
        self.log(f"fault: Kafka broker down ({how}); back in {down_s:.1f} s")
        if self._closing.wait(down_s):
            return
        started = time.monotonic()
        self._start_broker_again()
        self.log(f"Kafka broker back (started in {time.monotonic() - started:.1f} s)")

    def _start_broker_again(self) -> None:
        assert self.broker is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                self.broker.start(timeout=180)
                break
            except BrokerError as exc:
                # The old listener may linger a moment; the ports are ours, so try again until the deadline.
                if time.monotonic() > deadline or self._closing.is_set():
                    raise PlatformError(f"Kafka did not come back: {exc}") from None
                time.sleep(1)
        self._end_outage("broker")

    def _restart_postgres(self, down_s: float) -> None:
        assert self.postgres is not None and self.postgres.port is not None
        self.outages.append(Outage("postgres", self.elapsed()))
        self.postgres.stop("immediate")
        self.log(f"fault: PostgreSQL down (immediate shutdown, like a crash); back in {down_s:.1f} s")
        if self._closing.wait(down_s):
            return
        started = time.monotonic()
        self._start_postgres_again()
        self.log(f"PostgreSQL back (recovered and started in {time.monotonic() - started:.1f} s)")

    def _start_postgres_again(self) -> None:
        assert self.postgres is not None and self.postgres.port is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                self.postgres.start(port=self.postgres.port)
                break
            except PostgresError as exc:
                if time.monotonic() > deadline or self._closing.is_set():
                    raise PlatformError(f"PostgreSQL did not come back: {exc}") from None
                time.sleep(1)
        self._end_outage("postgres")

    def wait_restarts(self, timeout: float = 300) -> None:
        """Waits for a restart under way to finish; raises what it raised."""
        if self._restarting is not None:
            try:
                self._restarting.result(timeout)
            except concurrent.futures.TimeoutError:
                raise PlatformError(f"a broker or database restart did not finish within {timeout:g} s") from None

    def _end_outage(self, what: str) -> None:
        for outage in self.outages:
            if outage.what == what and outage.until is None:
                outage.until = self.elapsed()

    def _outage_at(self, at_s: float) -> str | None:
        for outage in reversed(self.outages):  # the latest first: it is the likeliest cause
            if outage.since <= at_s and (outage.until is None or at_s <= outage.until + DEPENDENCY_GRACE_S):
                return outage.what
        return None

    # --- supervision ----------------------------------------------------------------------------------------

    def supervise(self) -> None:
        """What an orchestrator does: a replica that exited by itself is noted and started again, with backoff."""
        now = time.monotonic()
        for replica in self.replicas:
            if replica.held_down or replica.alive:
                continue
            if replica.restart_at is None:
                code = replica.process.returncode if replica.process is not None else None
                at_s = self.elapsed()
                excused = self._outage_at(at_s)
                self.exits.append(Exit(replica.name, code, at_s, excused))
                why = f" while {excused} was down" if excused else ""
                self.log(f"{replica.name} exited by itself (code {code}){why}; restarting in {replica.backoff_s:.0f} s")
                replica.restart_at = now + replica.backoff_s
                replica.backoff_s = min(replica.backoff_s * 2, 15.0)
            elif now >= replica.restart_at:
                self.spawn(replica)
                self.log(f"restarted {replica.name} (pid {replica.pid})")

    def ensure_running(self) -> None:
        """After the faults: every replica up again, the broker and the database too."""
        self.wait_restarts()
        if self.broker is not None and not self.broker.is_running():
            self.launcher.submit(self._start_broker_again).result(300)
        if self.postgres is not None and not self.postgres.running:
            self.launcher.submit(self._start_postgres_again).result(300)
        for replica in self.replicas:
            while replica.held_down and not self.finish_stopping(replica):
                time.sleep(0.5)
            if not replica.alive:
                self.spawn(replica)
                self.log(f"started {replica.name} (pid {replica.pid}) for the checks")

    def ready(self) -> dict[str, str]:
        """Replicas whose /readyz does not answer 200, with what they say."""
        problems: dict[str, str] = {}
        with httpx.Client(timeout=5) as client:
            for replica in self.replicas:
                if not replica.alive:
                    problems[replica.name] = "not running"
                    continue
                try:
                    answer = client.get(f"{replica.url}/readyz")
                except httpx.HTTPError as exc:
                    problems[replica.name] = type(exc).__name__
                    continue
                if answer.status_code != 200:
                    try:
                        checks = answer.json().get("checks", {})
                        problems[replica.name] = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok") or "not ready"
                    except ValueError:
                        problems[replica.name] = f"HTTP {answer.status_code}"
        return problems

    def wait_ready(self, timeout: float) -> dict[str, str]:
        """Waits until every replica is ready (restarting any that exit meanwhile); returns what is still not."""
        deadline = time.monotonic() + timeout
        while True:
            self.supervise()
            problems = self.ready()
            if not problems or time.monotonic() > deadline:
                return problems
            time.sleep(0.5)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def log_tail(self, replica: Replica, lines: int = 20) -> str:
        try:
            return "\n".join(replica.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- tearing it down ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stops everything that still runs: replicas (SIGTERM, then SIGKILL of their group), broker, database."""
        self._closing.set()  # a restart under way brings nothing back any more
        self.launcher.shutdown(wait=True, cancel_futures=True)
        for replica in self.replicas:
            if replica.alive and replica.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    replica.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for replica in self.replicas:
            process = replica.process
            if process is None:
                continue
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # Still running, so its group id is still its own: the group goes, with anything it started.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)
        if self.broker is not None:
            with contextlib.suppress(Exception):
                self.broker.stop(timeout=20)
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.stop("fast", timeout=20)
        self._jwks.close()
