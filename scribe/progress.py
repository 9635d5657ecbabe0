"""Progress bars for long block-wise analyses (tqdm), silent unless asked for.

``progress_blocks(iterable, total=..., desc=...)`` wraps an iterable in a tqdm bar when
enabled. ``enabled=None`` shows the bar only when stderr is a terminal (so logs and test
output stay clean); :func:`set_enabled` switches every bar off (or on) for the process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

_SWITCH: dict[str, bool | None] = {"enabled": None}


def set_enabled(enabled: bool | None) -> None:
    """Switch all progress bars off (False), on (True) or back to automatic (None)."""
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True, False or None, got {enabled!r}")
    _SWITCH["enabled"] = enabled


def _wanted(enabled: bool | None) -> bool:
    if _SWITCH["enabled"] is False:
        return False
    if enabled is None:
        enabled = _SWITCH["enabled"]
    if enabled is None:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty())
    return bool(enabled)


def progress_blocks(iterable: Iterable, *, total: int | None, desc: str,
                    enabled: bool | None = None) -> Iterable:
    """``iterable`` itself, or wrapped in a tqdm bar of ``total`` steps labelled ``desc``.

    Parameters
    ----------
    iterable : iterable
    total : int or None
        Number of items (for the bar's length).
    desc : str
        Label shown before the bar.
    enabled : bool or None, default None
        None: only when stderr is a terminal. ``set_enabled(False)`` overrides True.
    """
    if not _wanted(enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)
