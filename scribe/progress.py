"""Progress bars for long block-wise analyses (tqdm), silent unless asked for.

``progress_blocks(iterable, total=..., desc=...)`` wraps an iterable in a tqdm bar when
enabled. ``enabled=None`` shows the bar only when stderr is a terminal (so logs and test
output stay clean); :func:`set_enabled` switches every bar off (or on) for the process:
the analyses' bars, the fit's bar (``scribe/svi/engine.py``) and the report's stages all
ask :func:`is_enabled`.
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


def is_enabled(enabled: bool | None = None) -> bool:
    """Whether a bar asked for with ``enabled`` is shown.

    Parameters
    ----------
    enabled : bool or None, default None
        The caller's wish: False never shows; True shows unless ``set_enabled(False)``;
        None follows :func:`set_enabled`, and when that is automatic too, shows only when
        stderr is a terminal.
    """
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True, False or None, got {enabled!r}")
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
    if not is_enabled(enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)
