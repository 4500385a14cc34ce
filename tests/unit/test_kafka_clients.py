"""One Kafka client factory: no module outside `shared/kafka.py` builds an aiokafka client itself."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
FACTORY = ROOT / "shared" / "kafka.py"


def client_constructions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in CLIENTS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} builds {name}")
    return found


def test_every_kafka_client_comes_from_the_factory() -> None:
    sources = [p for folder in ("shared", "services", "ceper", "bench", "tests") for p in (ROOT / folder).rglob("*.py")]
    assert FACTORY in sources and client_constructions(FACTORY)  # the check would see one
    offenders = [found for path in sources if path != FACTORY for found in client_constructions(path)]
    assert offenders == [], "use shared.kafka.producer/consumer/admin instead:\n" + "\n".join(offenders)
