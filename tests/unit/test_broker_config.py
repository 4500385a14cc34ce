"""The pure parts of the local broker: rendered properties, cluster ids, version parsing, pid and port checks."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from ceper import broker
from ceper.broker import (
    LocalKafka,
    broker_properties,
    default_cache_dir,
    new_cluster_id,
    parse_java_major,
    render_properties,
)
from shared.kafka import BrokerError


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_properties_make_one_node_broker_and_controller_on_loopback(tmp_path: Path) -> None:
    props = broker_properties(19092, 19093, tmp_path / "data")

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in props  # forbidden together with --standalone
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == props["listeners"]
    assert "0.0.0.0" not in "".join(props.values())
    assert props["log.dirs"] == str(tmp_path / "data")


def test_properties_fit_a_single_small_node(tmp_path: Path) -> None:
    props = broker_properties(19092, 19093, tmp_path)

    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert int(props["broker.heartbeat.interval.ms"]) < int(props["broker.session.timeout.ms"]) <= 5000
    assert int(props["log.cleaner.dedupe.buffer.size"]) <= 16 * 1024 * 1024
    assert props["auto.create.topics.enable"] == "false"
    assert props["num.partitions"] == "6"
    assert props["log.retention.ms"] == "-1"


def test_rendered_properties_read_back_the_same() -> None:
    props = broker_properties(19092, 19093, Path("/srv/kafka data/logs"))
    assert parse_properties(render_properties(props)) == props


def test_rendered_properties_escape_backslashes() -> None:
    assert "log.dirs=C:\\\\kafka\n" in render_properties({"log.dirs": "C:\\kafka"})


def test_cluster_id_is_22_url_safe_characters_without_leading_dash() -> None:
    ids = {new_cluster_id() for _ in range(2000)}

    assert len(ids) == 2000
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id), cluster_id
        assert not cluster_id.startswith("-")


def test_cluster_id_skips_a_leading_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([b"\xfb" + bytes(15), bytes(16)])  # 0xfb encodes to a leading '-'
    monkeypatch.setattr(broker.secrets, "token_bytes", lambda n: next(draws))
    assert new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ('Picked up JAVA_TOOL_OPTIONS: -Xss1m\nopenjdk version "11.0.2" 2019-01-15', 11),
        ("no java here", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert parse_java_major(output) == major


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "ceper-supply"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "ceper-supply"


def test_missing_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match=r"Java 17\+ not found: install a JDK"):
        broker.kafka_jars(cache_dir=tmp_path)


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "java"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(BrokerError, match="Java 17\\+ needed, found Java 11"):
        broker.java_executable()


def test_same_ports_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="must differ"):
        LocalKafka(tmp_path, port=19092, controller_port=19092)


def test_data_dir_formatted_for_another_controller_port_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text(json.dumps({"cluster_id": new_cluster_id(), "controller_port": 9093}))
    with pytest.raises(BrokerError, match="formatted for controller port 9093, not 19093"):
        LocalKafka(tmp_path, port=19092, controller_port=19093).start()


def test_stale_pid_file_of_another_process_is_ignored_and_removed(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path)
    # This test's own pid: alive, but not a Kafka broker, as when a pid is reused after a crash.
    kafka.pid_path.write_text(f"{os.getpid()}\n")

    assert kafka.is_running() is False
    assert not kafka.pid_path.exists()
    assert kafka.stop() is False


def test_status_of_a_never_started_broker(tmp_path: Path) -> None:
    status = LocalKafka(tmp_path / "kafka", port=19092, controller_port=19093).status()

    assert status["running"] is False
    assert status["pid"] is None
    assert status["bootstrap"] == "127.0.0.1:19092"
    assert status["data_dir"] == str((tmp_path / "kafka").resolve())
