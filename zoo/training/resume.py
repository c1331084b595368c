"""A fine-tuning run's private progress folder: what lets a killed run carry on where it stopped.

    identity = run_identity(model=..., weights=prefix, train=train, val=val, options={...})
    progress = Progress.open(out, identity, restart=False)   # checks it, locks it, decides
    progress.saved          # None: a fresh start (progress.why says why, when there was one)
    progress.save_epoch(SavedEpoch(...))                      # at every epoch's end
    progress.remove()       # once OUT is published

Where: ``.OUT.progress/`` beside OUT, private (0700, this user's, never a link):

* ``lock``: held while a run uses the folder, so a second run on the same OUT is refused;
* ``state.json``: the last completed epoch (phase, epoch, history, best score, which weight
  files hold it), replaced atomically and written *after* the files it names, so a kill at any
  moment leaves either the old epoch or the new one;
* ``weights-<n>.npz``, ``best-<n>.npz``, ``optimizer-<n>.npz``: the model, the best weights so
  far and the optimizer's slots at that epoch;
* ``work/``: the backbones converted for the feature passes (scratch: emptied when a run starts,
  so a killed run's conversions never pile up in the system's temporary folder).

The feature passes are not here but in the cache (``zoo.training.feature_cache``), keyed by what
they are, so that they also serve later runs; they too resume batch by batch.

A run resumes only when its identity (model and its weight files, the training and validation
listings with sizes and mtimes, and every option that changes the result) equals the saved one;
otherwise it starts afresh and says what changed. Randomness needs no saved state: every epoch
draws its order, augmentation and dropout from ``(seed, phase, epoch)`` (``zoo.training.loop``),
so a resumed run computes what an uninterrupted one would.

Why not Keras' ``BackupAndRestore``: it is a ``Model.fit`` callback, and `finetune` trains with its
own loop (``zoo.training.loop`` says why). This keeps what it keeps (weights, optimizer, epoch)
at the same moment (each epoch's end), plus the best weights and the feature passes.

Everything read here is untrusted (someone else's folder, a planted link, a torn file): it is
refused with a clear error naming the file, and ``restart=True`` is the way out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import UsageError
from .._util.atomic import DamagedStateFile, atomic_file, atomic_write_json, read_state
from .._util.safepath import open_file, remove_tree
from .inputs import ImageFolder

KIND = "mobilenet-zoo finetune progress"
VERSION = 1
STATE_FILE = "state.json"
LOCK_FILE = "lock"
WORK_FOLDER = "work"
_WEIGHT_FILE = re.compile(r"(weights|best|optimizer)-\d{1,9}\.npz")
_STATE_CAP = 16 << 20


def progress_dir(out: Path) -> Path:
    """The private progress folder of a run writing ``out``."""
    return out.parent / f".{out.name}.progress"


# ----------------------------------------------------------------------------- identity
def weights_signature(path: Path | None) -> dict[str, Any]:
    """The files a run starts from (a checkpoint's ``.index``/``.data-*``, or a ``.keras`` file);
    None: random weights (from scratch), which the seed among the options identifies."""
    if path is None:
        return {"path": None, "files": []}
    path = Path(path)
    files = sorted(p for p in path.parent.glob(path.name + "*") if p.is_file()) if path.parent.is_dir() else []
    return {"path": str(path), "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def run_identity(*, model: str, weights: Path | None, train: ImageFolder, val: ImageFolder,
                 options: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "weights": weights_signature(weights), "train": train.fingerprint(),
            "val": val.fingerprint(), "options": dict(options)}


def _key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def what_changed(old: Any, new: dict[str, Any]) -> str:
    """Why a saved run cannot be resumed, in words."""
    if not isinstance(old, dict):
        return "the saved progress does not say what it was"
    reasons = []
    for part, words in (("model", "the model"), ("weights", "the weight files it starts from"),
                        ("train", "the training images"), ("val", "the validation images")):
        if old.get(part) != new.get(part):
            reasons.append(f"{words} changed")
    old_options = old.get("options") if isinstance(old.get("options"), dict) else {}
    for name in sorted(set(old_options) | set(new["options"])):
        if old_options.get(name) != new["options"].get(name):
            reasons.append(f"{name} {old_options.get(name)!r} -> {new['options'].get(name)!r}")
    return "; ".join(reasons) or "its identity differs"


# ----------------------------------------------------------------------------- saved state
@dataclass
class SavedEpoch:
    """Everything a run needs to carry on after ``epoch`` epochs of phase ``phase`` (an index)."""

    phase: int
    epoch: int
    history: list[dict[str, Any]]
    best_score: float | None
    best_epoch: int
    feature_passes: list[dict[str, Any]]
    weights: list[np.ndarray] = field(repr=False)
    best_weights: list[np.ndarray] | None = field(repr=False)
    optimizer: list[np.ndarray] = field(repr=False)


class Progress:
    """An open, locked progress folder (see the module docstring). Use ``Progress.open``."""

    def __init__(self, folder: Path, identity: dict[str, Any], lock: Any):
        self.folder, self.identity, self._lock = folder, identity, lock
        self.key = _key(identity)
        self.saved: SavedEpoch | None = None
        self.why: str | None = None          # why an existing folder was not resumed
        self._number = 0

    @classmethod
    def open(cls, out: Path, identity: dict[str, Any], *, restart: bool = False) -> "Progress":
        """Check and lock the folder; load the saved epoch when the identity matches.

        ``restart``: discard whatever an earlier run saved (``why`` then says so)."""
        from ..fetching.locking import CacheLock, LockTimeout, holder

        folder = progress_dir(Path(out))
        if not _check_folder(folder):
            folder.mkdir(mode=0o700)
        lock_path = folder / LOCK_FILE
        lock = CacheLock(lock_path, timeout=0, what="finetune")
        try:
            lock.acquire()
        except LockTimeout:
            raise UsageError(f"another finetune ({holder(lock_path) or 'a running process'}) is writing out={out}",
                             hint="wait for it to finish, or stop it and run again", params=("out",)) from None
        except Exception as exc:  # noqa: BLE001 - a planted link or another user's file as the lock
            raise _refuse(folder, getattr(exc, "message", str(exc)), restart=False) from None
        progress = cls(folder, identity, lock)
        try:
            if restart:
                if any(child.name != LOCK_FILE for child in folder.iterdir()):
                    progress.why = "restart asked for: the saved progress was discarded"
                progress._start_afresh()
            else:
                progress._load()
        except BaseException:
            lock.release()
            raise
        return progress

    def _load(self) -> None:
        try:
            state = read_state(self.folder / STATE_FILE, _STATE_CAP, private=True)
        except DamagedStateFile as exc:
            raise _refuse(self.folder, f"{STATE_FILE} {exc.reason}") from None
        if state is None:
            if any(child.name != LOCK_FILE for child in self.folder.iterdir()):
                self.why = f"the saved progress has no {STATE_FILE}, so nothing in it can be trusted"
            self._start_afresh()
            return
        if not isinstance(state, dict) or state.get("kind") != KIND or state.get("version") != VERSION:
            raise _refuse(self.folder, f"{STATE_FILE} is not progress this version of mobilenet-zoo wrote")
        if state.get("key") != self.key:
            self.why = what_changed(state.get("identity"), self.identity)
            self._start_afresh()
            return
        try:
            self._number = int(state["number"])
            if state.get("files") is not None:  # None: no epoch ended yet (a feature pass may be under way)
                self.saved = _parse_state(state, self.folder)
        except (KeyError, TypeError, ValueError) as exc:
            raise _refuse(self.folder, f"{STATE_FILE} is damaged ({exc})") from None

    def _start_afresh(self) -> None:
        """Empty the folder (keeping its lock) and record whose progress it now holds."""
        for child in self.folder.iterdir():
            if child.name != LOCK_FILE:
                remove_tree(child)
        self._write_state({"number": 0, "files": None})

    def _write_state(self, fields: dict[str, Any]) -> None:
        atomic_write_json(self.folder / STATE_FILE, {"kind": KIND, "version": VERSION, "key": self.key,
                                                     "identity": self.identity, **fields}, mode=0o600)

    def save_epoch(self, saved: SavedEpoch) -> None:
        """Write the epoch's files, then ``state.json`` naming them, then drop the previous ones."""
        self._number += 1
        n = self._number
        files = {"weights": f"weights-{n}.npz", "optimizer": f"optimizer-{n}.npz"}
        if saved.best_weights is not None:
            files["best"] = f"best-{n}.npz"
        _write_arrays(self.folder / files["weights"], saved.weights)
        _write_arrays(self.folder / files["optimizer"], saved.optimizer)
        if "best" in files:
            _write_arrays(self.folder / files["best"], saved.best_weights)
        self._write_state({"number": n, "phase": saved.phase, "epoch": saved.epoch, "history": saved.history,
                           "best_score": saved.best_score, "best_epoch": saved.best_epoch,
                           "feature_passes": saved.feature_passes, "files": files})
        keep = set(files.values()) | {STATE_FILE, LOCK_FILE}
        for child in self.folder.iterdir():
            if child.name not in keep and _WEIGHT_FILE.fullmatch(child.name):
                child.unlink(missing_ok=True)
        self.saved = saved

    def work_folder(self) -> Path:
        """``work/``, empty: what a dead run left there is scratch, never resumed from."""
        work = self.folder / WORK_FOLDER
        remove_tree(work)
        work.mkdir(mode=0o700)
        return work

    def remove(self) -> None:
        """The run is published: the folder has done its job."""
        _remove(self.folder)
        self.close()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _check_folder(folder: Path) -> bool:
    """True if ``folder`` exists and is a progress folder we may use; refuse anything else."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(folder, "it is a symbolic link; progress is only kept in a real folder", restart=False)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(folder, "it is not a folder", restart=False)
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise _refuse(folder, f"it belongs to another user (uid {st.st_uid})", restart=False)
    if st.st_mode & 0o022:
        raise _refuse(folder, "others may write in it (it should be private: chmod 700)", restart=False)
    return True


def _refuse(folder: Path, problem: str, restart: bool = True) -> UsageError:
    if restart:
        return UsageError(f"cannot resume from {folder}: {problem}",
                          hint="pass restart=True to discard it and start afresh", params=("restart",))
    return UsageError(f"cannot use {folder} for this run's progress: {problem}",
                      hint=f"move or remove {folder} yourself, then run again")


def _remove(folder: Path) -> None:
    if _check_folder(folder):
        remove_tree(folder)


def _parse_state(state: dict[str, Any], folder: Path) -> SavedEpoch:
    files = state["files"]
    if not isinstance(files, dict) or not set(files) <= {"weights", "best", "optimizer"} \
            or not {"weights", "optimizer"} <= set(files):
        raise ValueError("its files are not weights, best and optimizer")
    for name in files.values():
        if not isinstance(name, str) or not _WEIGHT_FILE.fullmatch(name):
            raise ValueError(f"it names a file {name!r} that this program never writes")
    for key, kind in (("phase", int), ("epoch", int), ("best_epoch", int), ("history", list),
                      ("feature_passes", list), ("number", int)):
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise ValueError(f"{key} is not {kind.__name__}")
    if state["phase"] < 0 or state["epoch"] < 0:
        raise ValueError("a negative phase or epoch")
    if state["best_score"] is not None and not isinstance(state["best_score"], (int, float)):
        raise ValueError("best_score is not a number")
    return SavedEpoch(phase=state["phase"], epoch=state["epoch"], history=state["history"],
                      best_score=state["best_score"], best_epoch=state["best_epoch"],
                      feature_passes=state["feature_passes"],
                      weights=_read_arrays(folder / files["weights"]),
                      best_weights=_read_arrays(folder / files["best"]) if "best" in files else None,
                      optimizer=_read_arrays(folder / files["optimizer"]))


def _write_arrays(path: Path, arrays: Sequence[np.ndarray]) -> None:
    with atomic_file(path, mode=0o600) as fh:
        np.savez(fh, *[np.asarray(a) for a in arrays])


def _read_arrays(path: Path) -> list[np.ndarray]:
    """The arrays of one of our ``.npz`` files: no link followed, no pickles, all of them read now."""
    try:
        with open_file(path, "rb", adopt=True) as fh, np.load(fh, allow_pickle=False) as npz:
            names = list(npz.files)
            arrays = {name: npz[name] for name in names}
    except FileNotFoundError:
        raise ValueError(f"{path.name} is missing") from None
    except Exception as exc:  # noqa: BLE001 - a torn zip, a link, another user's file, a pickle
        raise ValueError(f"{path.name} cannot be read ({getattr(exc, 'message', exc)})") from None
    expected = [f"arr_{i}" for i in range(len(names))]
    if sorted(names) != sorted(expected):
        raise ValueError(f"{path.name} holds arrays this program never writes")
    return [arrays[name] for name in expected]


def check_fits(arrays: Sequence[np.ndarray], like: Sequence[Any], what: str, folder: Path) -> None:
    """Refuse saved arrays whose count or shapes differ from the model's."""
    if len(arrays) != len(like) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(arrays, like)):
        raise _refuse(folder, f"the saved {what} do not fit this model")
