"""One parser for token lengths and depths, used by every command and config (`1k,2k,4k`, `0,50%,100%`).

    >>> parse_lengths("1k,2048,1.5k"), parse_depths("0,50%,0.25")
    ([1024, 2048, 1536], [0.0, 0.5, 0.25])
"""
from __future__ import annotations

from typing import Any

from .errors import UserError

MAX_LENGTH = 1 << 20  # 1M tokens: beyond this a length is almost surely a typo (generating it takes minutes and GBs)


def _parts(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [p.strip() for p in str(value).split(",") if p.strip()]


def parse_length(text: Any, what: str = "length") -> int:
    """'2k' -> 2048, '1.5k' -> 1536, '1m' -> 1048576, '4096' -> 4096; must be a positive whole number of tokens."""
    if isinstance(text, bool) or isinstance(text, (list, dict)):
        raise UserError(f"{what} {text!r} is not a length: write numbers such as 1024,2k,8k")
    part = str(text).strip().lower()
    scale = {"k": 1024, "m": 1024 * 1024}.get(part[-1:], 1)
    number = part[:-1] if scale > 1 else part
    try:
        value = float(number) * scale
    except ValueError:
        raise UserError(f"'{text}' is not a {what}: write numbers such as 1024,2k,8k") from None
    if value != int(value):
        raise UserError(f"{what} {text} is not a whole number of tokens: write e.g. 1536 or 1.5k")
    if value < 1:
        raise UserError(f"{what} {text} must be at least 1 token: use lengths such as 1k,2k,4k")
    return int(value)


def parse_lengths(value: Any, what: str = "length") -> list[int]:
    return [parse_length(p, what) for p in _parts(value)]


def parse_depth(text: Any) -> float:
    """'50%' -> 0.5, '0.25' -> 0.25; a depth is a fraction 0..1 or a percentage 0%..100%."""
    if isinstance(text, bool) or isinstance(text, (list, dict)):
        raise UserError(f"depth {text!r} is not a depth: write fractions 0..1 or percentages like 25%")
    part = str(text).strip()
    pct = part.endswith("%")
    try:
        v = float(part.rstrip("%"))
    except ValueError:
        raise UserError(f"'{part}' is not a depth: write fractions 0..1 or percentages like 25%") from None
    v = v / 100 if pct else v
    if not 0.0 <= v <= 1.0:
        raise UserError(f"depth {part} is outside 0..1: write a fraction such as 0.25 or a percentage from 0% to 100%")
    return v


def parse_depths(value: Any) -> list[float]:
    return [parse_depth(p) for p in _parts(value)]


def positive_int(value: Any, flag: str, minimum: int = 1) -> int:
    """A whole number >= minimum, or a UserError naming the flag and what it needs."""
    if isinstance(value, bool):
        raise UserError(f"{flag} must be a whole number, got {value!r}")
    try:
        v = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise UserError(f"{flag} must be a whole number, got {value!r}") from None
    if v < minimum:
        raise UserError(f"{flag} {v}: must be {minimum} or more")
    return v
