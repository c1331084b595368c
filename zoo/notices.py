"""Warnings the library gives while it works, as Python warnings with their own categories.

From the API a notice is a ``warnings.warn`` that callers can filter by category::

    import warnings, zoo
    warnings.simplefilter("ignore", zoo.TrustOnFirstUseWarning)

The CLI installs its own printer instead (``warning: ...`` on stderr, see
``zoo._util.progress.install``). Both receive the same text: a :class:`Notice` is a plain
string that also remembers its category, so any ``Callable[[str], None]`` sink works.
"""

from __future__ import annotations

import sys
import warnings
from types import FrameType


class ZooWarning(UserWarning):
    """Base of every warning mobilenet-zoo gives (a rebuilt entry, a replaced cached copy, ...)."""


class TrustOnFirstUseWarning(ZooWarning):
    """Upstream publishes no sha256: the first download's digest was recorded and is insisted on
    from now on. Filter it once you have reviewed the digest (or pin one in your own catalog)."""


class Notice(str):
    """A warning's text together with its category; behaves as the plain string everywhere else."""

    category: type[Warning] = ZooWarning

    def __new__(cls, text: str, category: type[Warning] = ZooWarning) -> "Notice":
        notice = super().__new__(cls, text)
        notice.category = category
        return notice


def warn(message: str) -> None:
    """The API's warning sink: ``warnings.warn`` with the notice's category (``ZooWarning`` for a
    plain string), attributed to the first caller outside this package so filters by module work."""
    from ._util.redact import redact

    warnings.warn(redact(str(message)), getattr(message, "category", ZooWarning), stacklevel=_outside_zoo())


def _outside_zoo() -> int:
    """The ``stacklevel`` of the nearest frame whose module is not part of ``zoo``."""
    frame: FrameType | None = sys._getframe(2)  # 1 = warn() itself, 2 = its caller
    level = 2
    while frame is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] == "zoo":
        frame, level = frame.f_back, level + 1
    return level
