"""Latencies measured on this machine by `bench`, kept per user and per machine.

They live under the platform's user *data* directory (``XDG_DATA_HOME`` on Linux) or
at $MOBILENET_ZOO_PROFILE, never in the model cache, which many machines may share.
The catalog merges them in as extra devices so `pick`, `list` and `plot` treat them
like the published phones:

* ``local``: the most recent `bench` figure for the model (any format and threads);
* ``local-<format>-<threads>t``: the latest figure for that exact setting,
  e.g. ``local-tflite-1t``.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from .. import config
from .._util.atomic import atomic_write_json, read_json
from ..errors import ZooError

LOCAL = "local"


def device_name(fmt: str, threads: int) -> str:
    return f"{LOCAL}-{fmt}-{threads}t"


def _read(path: Path) -> dict[str, Any]:
    data = read_json(path)  # a damaged profile must not break `list`; `bench` rewrites it whole
    if not isinstance(data, dict) or not isinstance(data.get("measurements"), dict):
        return {"version": 1, "measurements": {}}
    return data


def read_local_latencies(path: Path | None = None) -> dict[str, dict[str, float]]:
    """model id -> {device: median ms} for every measurement in the profile."""
    data = _read(path or config.profile_path())
    out: dict[str, dict[str, float]] = {}
    for model_id, records in data["measurements"].items():
        if not isinstance(records, dict):
            continue
        latest: tuple[float, float] | None = None
        devices: dict[str, float] = {}
        for device, rec in records.items():
            try:
                ms, when = float(rec["median_ms"]), float(rec.get("measured_at", 0))
            except (KeyError, TypeError, ValueError):
                continue
            if ms <= 0:
                continue
            devices[device] = ms
            if latest is None or when >= latest[0]:
                latest = (when, ms)
        if latest is not None:
            devices[LOCAL] = latest[1]
            out[model_id] = devices
    return out


class ProfileError(ZooError):
    """The measurement was made but cannot be saved (read-only home, full disk...)."""

    def __init__(self, path: Path, exc: BaseException):
        reason = getattr(exc, "strerror", None) or str(exc)
        super().__init__(f"could not save the measurements to {path}: {reason}",
                         f"point ${config.ENV_PROFILE} at a writable file, or fix the permissions of {path.parent}")
        self.path = path


def record(model_id: str, fmt: str, threads: int, median_ms: float, p90_ms: float,
           path: Path | None = None) -> Path:
    """Add one measurement; the file is rewritten atomically under a lock (ProfileError if it cannot be)."""
    target = path or config.profile_path()
    try:
        _record(target, model_id, fmt, threads, median_ms, p90_ms)
    except OSError as exc:
        raise ProfileError(target, exc) from None
    return target


def _record(target: Path, model_id: str, fmt: str, threads: int, median_ms: float, p90_ms: float) -> None:
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = FileLock(str(target) + ".lock", timeout=30)
        lock.acquire()
    except Timeout as exc:
        raise OSError(f"its lock {target}.lock is held by another process") from exc
    try:
        data = _read(target)
        data.setdefault("machine", {"node": platform.node(), "machine": platform.machine(),
                                    "processor": platform.processor() or None,
                                    "cpus": os.cpu_count()})
        data["measurements"].setdefault(model_id, {})[device_name(fmt, threads)] = {
            "format": fmt, "threads": threads, "median_ms": round(median_ms, 4),
            "p90_ms": round(p90_ms, 4), "measured_at": time.time(),
        }
        atomic_write_json(target, data)
    finally:
        lock.release()
