"""The one background-task helper: supervised restarts with backoff, clean stops, periodic work."""

from __future__ import annotations

import asyncio

import pytest

from shared.tasks import BackgroundTask, Backoff, every


def test_backoff_grows_to_its_ceiling_and_resets() -> None:
    backoff = Backoff(first=0.1, most=0.5, jitter=0)
    assert [backoff.next_delay() for _ in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert backoff.failures == 5
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)


def test_backoff_jitter_stays_within_its_band() -> None:
    backoff = Backoff(first=1.0, most=1.0, jitter=0.2)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len({round(d, 6) for d in delays}) > 1


async def test_a_crashing_task_is_restarted_and_counted() -> None:
    runs = 0
    crashes: list[str] = []
    done = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"crash {runs}")
        done.set()
        await asyncio.sleep(3600)

    task = BackgroundTask("worker", work, backoff=Backoff(first=0.01, most=0.02), on_crash=lambda e: crashes.append(str(e)))
    task.start()
    await asyncio.wait_for(done.wait(), 5)
    assert task.running and task.crashes == 2 and crashes == ["crash 1", "crash 2"]
    assert task.last_error == "RuntimeError: crash 2"
    await task.stop()
    assert not task.running


async def test_a_task_without_restart_stays_dead_after_a_crash() -> None:
    async def work() -> None:
        raise ValueError("broken")

    task = BackgroundTask("once", work, restart=False)
    task.start()
    await asyncio.sleep(0.05)
    assert not task.running and task.crashes == 1
    await task.stop()


async def test_a_task_that_returns_is_done_and_not_restarted() -> None:
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1

    task = BackgroundTask("short", work, backoff=Backoff(first=0.01))
    task.start()
    await asyncio.sleep(0.05)
    assert runs == 1 and not task.running


async def test_periodic_work_survives_a_failed_run() -> None:
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("database away")

    task = BackgroundTask("job", every(lambda: 0.01, work, name="job"))
    task.start()
    await asyncio.sleep(0.2)
    await task.stop()
    assert runs >= 3 and task.crashes == 0


async def test_an_expected_failure_is_retried_and_a_run_can_reset_the_shared_backoff() -> None:
    backoff = Backoff(first=0.01, most=0.05, jitter=0)
    runs = 0
    crashes: list[BaseException] = []
    done = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise ConnectionError("broker away")
        backoff.reset()  # connected: the next outage starts from the first delay again
        done.set()
        await asyncio.sleep(3600)

    task = BackgroundTask("follower", work, backoff=backoff, expected=(OSError,), on_crash=crashes.append)
    task.start()
    await asyncio.wait_for(done.wait(), 5)
    assert task.running and runs == 4
    assert [type(e) for e in crashes] == [ConnectionError] * 3 and task.last_error == "ConnectionError: broker away"
    assert backoff.failures == 0 and backoff.next_delay() == pytest.approx(0.01)
    await task.stop()
