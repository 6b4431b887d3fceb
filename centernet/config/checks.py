"""The checks every schema's `__post_init__` makes: each raises `ConfigError` naming the full key,
its value and what is allowed; and durations (`45m`, `1h30m`), which two sections take."""

from __future__ import annotations

import re
from typing import Any, Sequence

from centernet.errors import ConfigError


def fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        fail(key, value, "choose one of " + ", ".join(choices))


def at_least(key: str, value: float, minimum: float) -> None:
    if value < minimum:
        fail(key, value, f"must be >= {minimum}")


def in_range(key: str, value: float, low: float, high: float, *, open_low: bool = False) -> None:
    if not (low < value <= high if open_low else low <= value <= high):
        fail(key, value, f"must be in {'(' if open_low else '['}{low}, {high}]")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_SECONDS_PER_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `45m`, `2h`, `90s`, `1h30m` or `1.5h`.

    Raises:
        ValueError: the text is not such a duration (the message shows the accepted forms).
    """
    compact = str(text).strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError("must be a duration such as 45m, 2h, 90s or 1h30m (or auto, or null)")
    return sum(float(number) * _SECONDS_PER_UNIT[unit] for number, unit in parts)
