"""Facts about the machine a suite runs on: CPU, cores, software versions, load."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.redis_server import REDIS_SERVER


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def redis_version() -> str:
    """What `redis-server --version` says its version is."""
    try:
        done = subprocess.run(
            [REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    for word in done.stdout.split():
        if word.startswith("v="):
            return word[2:]
    return done.stdout.strip() or "unknown"


_YARDSTICK = """
import os, timeit
os.sched_setaffinity(0, {%d})
print(min(timeit.repeat("sum(range(1000))", number=2000, repeat=7)) / 2000 * 1e6)
"""


def python_speed_us(core: int) -> float:
    """Microseconds that `sum(range(1000))` takes in Python on `core`, best of 7.

    A yardstick for comparing runs: the speed of shared machines varies, and every
    figure of a Python server scales with it.
    """
    done = subprocess.run(
        [sys.executable, "-c", _YARDSTICK % core],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return round(float(done.stdout), 1)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def machine_facts(server_core: int) -> dict[str, object]:
    """Date, CPU, cores, OS, Python, the server core's speed and the servers' software."""
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_speed_us": python_speed_us(server_core),
        "versions": {
            "longpoll": _version("longpoll"),
            "uvicorn": _version("uvicorn"),
            "uvloop": _version("uvloop"),
            "granian": _version("granian"),
            "redis-py": _version("redis"),
            "redis-server": redis_version(),
        },
    }
