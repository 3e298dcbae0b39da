"""Results as JSON: the report, the options that produced it and the environment."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def _environment() -> dict[str, object]:
    try:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        loop = "asyncio"
    return {
        "python": platform.python_version(),
        "loop": loop,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def result_payload(
    scenario: str, options: Mapping[str, object], report: DataclassInstance
) -> dict[str, object]:
    """`report`, the options that produced it and the environment, as JSON-ready values."""
    return {
        "scenario": scenario,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
        "environment": _environment(),
        **dataclasses.asdict(report),
    }


def write_json(
    path: Path, scenario: str, options: dict[str, object], report: DataclassInstance
) -> None:
    """Write `report`, the options that produced it and the environment as JSON to `path`."""
    payload = result_payload(scenario, options, report)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
