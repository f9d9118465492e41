"""Which way `ATALPModel`'s logs improve, for Keras' monitoring callbacks.

``EarlyStopping``, ``ReduceLROnPlateau`` and ``ModelCheckpoint`` in their
default ``mode="auto"`` learn whether a monitored log should rise or fall from
the metrics ``compile(metrics=...)`` built (Keras looks only inside those
containers). `ATALPModel` logs through its own trackers, so ``auto`` refused
``monitor="val_adv_accuracy"`` ("Keras isn't able to automatically determine
whether that metric should be maximized or minimized") where a plain Keras
model accepts ``val_accuracy``. This module settles the direction for the
logs the model writes: accuracies rise, every loss term falls.
"""


def resolve_auto_modes(callbacks, log_names):
    """Sets ``mode`` to ``"max"``/``"min"`` on callbacks left at ``"auto"``.

    Only callbacks that monitor one of ``log_names`` (with or without the
    ``val_`` prefix) and have not yet fixed their direction are changed; any
    other monitor is left to Keras, which refuses what it cannot tell.

    Args:
        callbacks: The callbacks given to ``fit``.
        log_names: The names the model logs (``loss``, ``ce_adv``,
            ``adv_accuracy``, ...).

    Returns:
        ``callbacks``, as a list.
    """
    callbacks = list(callbacks or [])
    names = set(log_names)
    for callback in callbacks:
        # Keras' MonitorCallback (not public API): a mode, a monitor and a
        # monitor_op chosen lazily from the mode.
        if (getattr(callback, "mode", None) != "auto"
                or getattr(callback, "monitor_op", False) is not None
                or not isinstance(getattr(callback, "monitor", None), str)):
            continue
        name = callback.monitor.removeprefix("val_")
        if name in names:
            callback.mode = "max" if name.endswith("accuracy") else "min"
    return callbacks
