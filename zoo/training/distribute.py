"""Which ``tf.distribute`` strategy a training run uses, and what ``TF_CONFIG`` says.

    plan = plan_strategy("multiworker", os.environ.get("TF_CONFIG"))   # pure: checks only
    strategy = make_strategy(plan)                                      # before any other TF op

* ``mirrored``: every local GPU, or every logical CPU device when there is no GPU (how
  the tests run it), with synchronous all-reduce;
* ``multiworker``: ``MultiWorkerMirroredStrategy`` over the cluster in the standard
  ``TF_CONFIG`` (``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",
  "index": 0}}``; a ``chief`` entry is optional). Each worker reads its own share of the
  files (``ImageFolder.shard``); the chief (``chief`` task, else worker 0) alone writes OUT;
* ``auto``: multiworker when ``TF_CONFIG`` names more than one task, mirrored when there
  are several GPUs, else TensorFlow's default (one device).

``TF_CONFIG`` is untrusted input: it is parsed and checked here, and a malformed one
is a one-line error naming the problem before TensorFlow sees it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

STRATEGIES = ("auto", "mirrored", "multiworker")
_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\'')
_TASK_TYPES = ("chief", "worker")


@dataclass(frozen=True)
class StrategyPlan:
    """What to build: the kind, and for multiworker this process's place in the cluster."""

    kind: str                 # "default", "mirrored" or "multiworker"
    workers: int = 1          # processes taking part in training
    worker_index: int = 0     # this process's data shard (chief first)
    is_chief: bool = True     # the one process that writes OUT


def parse_tf_config(text: str) -> StrategyPlan:
    """Check ``TF_CONFIG`` and place this process in the cluster (UsageError if malformed)."""
    def bad(problem: str) -> UsageError:
        return UsageError(f"TF_CONFIG is malformed: {problem}", hint=f"expected e.g. {_EXAMPLE}")

    try:
        config = json.loads(text)
    except ValueError as exc:
        raise bad(f"not valid JSON ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) \
            or not isinstance(config.get("task"), dict):
        raise bad('it needs a "cluster" object and a "task" object')
    cluster, task = config["cluster"], config["task"]
    unknown = sorted(set(cluster) - set(_TASK_TYPES))
    if unknown:
        raise bad(f"unsupported task type(s) {', '.join(unknown)} in cluster "
                  "(MultiWorkerMirroredStrategy takes chief and worker only)")
    for kind in _TASK_TYPES:
        hosts = cluster.get(kind, [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and _host_port(h) for h in hosts):
            raise bad(f'cluster "{kind}" must be a list of "host:port" strings, got {hosts!r}')
    if len(cluster.get("chief", [])) > 1:
        raise bad("a cluster has at most one chief")
    if not cluster.get("worker") and not cluster.get("chief"):
        raise bad('cluster lists no "worker"')
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in _TASK_TYPES or kind not in cluster:
        raise bad(f"task type {kind!r} is not in the cluster ({', '.join(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise bad(f"task index {index!r} is out of range for {len(cluster[kind])} {kind}(s)")
    chiefs = len(cluster.get("chief", []))
    workers = chiefs + len(cluster.get("worker", []))
    if kind == "chief":
        return StrategyPlan("multiworker", workers, 0, True)
    return StrategyPlan("multiworker", workers, chiefs + index, chiefs == 0 and index == 0)


def _host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def plan_strategy(kind: str, tf_config: str | None, gpus: int = 0) -> StrategyPlan:
    """The strategy for ``--strategy kind`` given ``TF_CONFIG`` (None if unset) and the GPU count."""
    if kind not in STRATEGIES:
        raise UsageError(f"unknown strategy={kind!r}", hint=f"use one of: {', '.join(STRATEGIES)}",
                         params=("strategy",))
    text = (tf_config or "").strip()
    if kind == "multiworker":
        if not text:
            raise UsageError("strategy='multiworker' needs the TF_CONFIG environment variable",
                             hint=f"set it on every worker, e.g. {_EXAMPLE}", params=("strategy",))
        return parse_tf_config(text)
    if kind == "auto" and text:
        plan = parse_tf_config(text)
        if plan.workers > 1:
            return plan
    if kind == "mirrored" or gpus > 1:
        return StrategyPlan("mirrored")
    return StrategyPlan("default")


def make_strategy(plan: StrategyPlan) -> Any:
    """Build the ``tf.distribute`` strategy. Call before TensorFlow runs its first op."""
    from ..formats.keras_models import import_tensorflow

    tf = import_tensorflow()
    if plan.kind == "multiworker":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot start multi-worker training: {exc}",
                             hint="start every worker in a fresh process with its own TF_CONFIG") from None
    if plan.kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def local_gpu_count() -> int:
    from ..formats.keras_models import import_tensorflow

    return len(import_tensorflow().config.list_physical_devices("GPU"))
