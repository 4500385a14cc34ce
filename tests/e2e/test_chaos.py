"""`ceper chaos --quick` as `make test` runs it: two replicas of every service on the real broker and PostgreSQL,
replicas killed and stopped, the broker and the database restarted, the webhook endpoint away, poison sent;
afterwards nothing lost, nothing applied twice, no order stuck, no webhook doubled, no process left behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADLINE = re.compile(r"^lost (\d+), applied twice (\d+), stuck (\d+), webhooks doubled (\d+), (.*)$", re.MULTILINE)


def _processes_using(directory: Path) -> list[str]:
    """Running processes that work in `directory` or name it (the services' working directory, the broker's
    configuration, the database's data directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if str(directory) in command or cwd.startswith(str(directory)):
                found.append(f"{entry.name}: {command}")
    return found


@pytest.fixture
def run_dir():
    # Not pytest's tmp_path: as root the run's PostgreSQL server works as the `postgres` user, who may not enter it.
    directory = Path(tempfile.mkdtemp(prefix="ceper-test-chaos-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.timeout(1800)
def test_quick_chaos_run_loses_nothing_applies_nothing_twice_and_leaves_nothing_behind(run_dir):
    env = {key: value for key, value in os.environ.items() if not key.startswith("CEPER_")}
    done = subprocess.run(
        [sys.executable, "-m", "ceper", "chaos", "--quick", "--seed", "1", "--dir", str(run_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1700,
        start_new_session=True,
    )
    output = done.stdout + done.stderr
    headline = HEADLINE.search(done.stdout)
    assert headline is not None, output[-6000:]
    assert headline.group(0).startswith("lost 0, applied twice 0, stuck 0, webhooks doubled 0"), output[-6000:]
    assert all(count == "0" for count in re.findall(r" (\d+)(?:,|$)", headline.group(5))), output[-6000:]
    assert done.returncode == 0, output[-6000:]
    # The faults really happened: every replica was killed, the broker and the database restarted.
    faults = re.search(
        r"^faults injected: (\d+) SIGKILLs, (\d+) graceful stops, (\d+) broker restarts.*?(\d+) PostgreSQL restarts",
        done.stdout,
        re.MULTILINE,
    )
    assert faults is not None, output[-6000:]
    kills, stops, broker, postgres = (int(n) for n in faults.groups())
    assert kills >= 6 and stops >= 1 and broker >= 1 and postgres >= 1, faults.group(0)
    assert "left out" not in faults.group(0)
    assert _processes_using(run_dir) == [], "processes of the run left behind"
