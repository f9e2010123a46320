"""Shared set-up for bench scripts: a scratch embedded PostgreSQL (or DATABASE_URL), migrated."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def setup_django(*, keep: bool = False) -> Path:
    """Start a scratch database unless DATABASE_URL is set, migrate, and set Django up."""
    from launcher import embedded

    root = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="attest-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    embedded.ensure_runtime_dir(root)
    os.environ.setdefault("DATA_DIR", str(root / "data"))
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not os.environ.get("DATABASE_URL"):
        server = embedded.start_postgres(root / "pg")
        os.environ["DATABASE_URL"] = server.get_uri()
        if keep:
            import atexit

            atexit.unregister(server._cleanup)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return root


def cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat: user, nice, system, idle, iowait, irq,
    softirq, steal), or [] where there is no /proc."""
    try:
        with Path("/proc/stat").open() as f:
            return [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return []


def cpu_shares(before: list[int], after: list[int]) -> tuple[float, float]:
    """(busy, stolen) shares of the CPU time between two readings: steal is time a virtual
    machine's host gave to others, which neither the bench nor PostgreSQL could use."""
    if not before or not after:
        return 0.0, 0.0
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta) or 1
    idle, steal = delta[3] + delta[4], delta[7]
    return (total - idle - steal) / total, steal / total


def machine() -> str:
    """The CPU these figures come from: model, usable cores and the vector instructions that
    decide int8 speed. The hosts of these 2-core machines differ from day to day (the same
    code's figures have differed 1.8x between them), so every figure needs this beside it."""
    model, flags = "unknown CPU", set()
    try:
        with Path("/proc/cpuinfo").open() as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if model != "unknown CPU" and flags:
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    # The first of these the CPU has: what ONNX Runtime's int8 kernels can use.
    isa = next((f for f in ("avx512_vnni", "avx_vnni", "avx2") if f in flags), "no avx2")
    return f"{model}, {cores} cores, {isa}"
