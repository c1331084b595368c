"""Sort a training checkpoint's variables: model weights versus training extras.

Published slim checkpoints are training snapshots. Next to the model variables they hold
``global_step``, optimizer slots (``<var>/RMSProp``, ``<var>/RMSProp_1``, ``<var>/Momentum``
...), ``<var>/ExponentialMovingAverage`` shadows and, for quantization-aware training,
fake-quant ranges (``<scope>/act_quant/min``, ``.../weights_quant/max``) with their moving
averages' state (``.../min/biased``, ``.../min/local_step``). None of those is a model weight
(the ranges are read by ``fake_quant``, not here); this module names the reason each one is
skipped so the restore summary can show it.
"""

from __future__ import annotations

import re

EMA_SUFFIX = "/ExponentialMovingAverage"

# reason -> test on the variable name; checked in this order.
_OPTIMIZER_SLOTS = ("RMSProp", "RMSProp_1", "Momentum", "Adam", "Adam_1", "Adagrad",
                    "Ftrl", "Ftrl_1", "Adadelta", "Adadelta_1", "LARSOptimizer")
_OPTIMIZER_STATE = ("beta1_power", "beta2_power", "learning_rate")
# the zero-debias state of a moving-average range (python/training/moving_averages.py)
_MOVING_AVERAGE_SLOTS = ("biased", "local_step")
_FAKE_QUANT = re.compile(r"(^|/)[^/]*quant[^/]*/(min|max)(/|$)", re.IGNORECASE)


def extra_reason(name: str) -> str | None:
    """Why a checkpoint variable is not a model weight, or None if it may be one.

    EMA shadows are not classified here: whether they are used depends on ``weights``.
    """
    last = name.rsplit("/", 1)[-1]
    if last == "global_step":
        return "global_step"
    if last in _MOVING_AVERAGE_SLOTS and _FAKE_QUANT.search(name):
        return "moving_average_slot"
    if _FAKE_QUANT.search(name):
        return "fake_quant_range"
    if last in _OPTIMIZER_SLOTS:
        return "optimizer_slot"
    if name in _OPTIMIZER_STATE or last in _OPTIMIZER_STATE:
        return "optimizer_state"
    return None


def is_ema_shadow(name: str) -> bool:
    return name.endswith(EMA_SUFFIX)


def shadow_of(name: str) -> str:
    return name + EMA_SUFFIX
