"""Latencies measured on this machine by `bench`, kept per user and per machine.

They live under the platform's user *data* directory (``XDG_DATA_HOME`` on Linux) or
at $MOBILENET_ZOO_PROFILE, never in the model cache, which many machines may share.
The catalog merges them in as extra devices so `pick`, `list` and `plot` treat them
like the published phones:

* ``local``: the most recent `bench` figure for the model (any format and threads);
* ``local-<format>-<threads>t``: the latest figure for that exact setting on the format's
  own runtime, e.g. ``local-tflite-1t`` (LiteRT); on another runtime
  ``local-<runtime>-<format>-<threads>t``, e.g. ``local-openvino-tflite-1t``;
* ``local-<runtime>``: the most recent figure on that runtime (``local-openvino``), what
  `pick --device local --runtime openvino` ranks by;
* ``local-fastest``: the fastest figure measured for the model on any runtime, format and
  thread count, what `pick --device local --runtime any` ranks by.
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
FASTEST = f"{LOCAL}-fastest"


def device_name(fmt: str, threads: int, runtime: str | None = None) -> str:
    """``runtime`` None: the format's own runtime (the name figures had before runtimes were chosen)."""
    return f"{LOCAL}-{fmt}-{threads}t" if runtime is None else f"{LOCAL}-{runtime}-{fmt}-{threads}t"


def runtime_device(runtime: str) -> str:
    """The device name of the latest figure on ``runtime`` (``local-openvino``)."""
    return f"{LOCAL}-{runtime}"


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
        latest: dict[str, tuple[float, float]] = {}  # device -> (when, ms) of the newest figure
        devices: dict[str, float] = {}
        for device, rec in records.items():
            try:
                ms, when = float(rec["median_ms"]), float(rec.get("measured_at", 0))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            if not ms > 0 or ms == float("inf") or device in (LOCAL, FASTEST):
                continue
            devices[device] = ms
            runtime = rec.get("runtime")
            for name in (LOCAL, runtime_device(runtime) if isinstance(runtime, str) and runtime.isidentifier() else None):
                if name is not None and (name not in latest or when >= latest[name][0]):
                    latest[name] = (when, ms)
        if latest:
            devices.update({name: ms for name, (_, ms) in latest.items()})
            devices[FASTEST] = min(ms for device, ms in devices.items() if device.count("-") >= 2)
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
           path: Path | None = None, *, runtime: str | None = None, own_runtime: bool = True) -> Path:
    """Add one measurement; the file is rewritten atomically under a lock (ProfileError if it cannot be).

    ``runtime``: which engine ran it (kept in the record); ``own_runtime``: it is the format's
    own, so the figure keeps the device name it had before runtimes could be chosen.
    """
    target = path or config.profile_path()
    try:
        _record(target, model_id, fmt, threads, median_ms, p90_ms, runtime, own_runtime)
    except OSError as exc:
        raise ProfileError(target, exc) from None
    return target


def _record(target: Path, model_id: str, fmt: str, threads: int, median_ms: float, p90_ms: float,
            runtime: str | None, own_runtime: bool) -> None:
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
        name = device_name(fmt, threads, None if own_runtime or runtime is None else runtime)
        data["measurements"].setdefault(model_id, {})[name] = {
            "format": fmt, "runtime": runtime, "threads": threads, "median_ms": round(median_ms, 4),
            "p90_ms": round(p90_ms, 4), "measured_at": time.time(),
        }
        atomic_write_json(target, data)
    finally:
        lock.release()
