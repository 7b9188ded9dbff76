"""User-facing errors: one line that names the fix, printed by the CLI without a traceback."""
from __future__ import annotations


class UserError(Exception):
    """Bad input or environment. The message is one line and says how to fix it."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def require(condition: bool, message: str) -> None:
    """Raise UserError(message) unless condition holds."""
    if not condition:
        raise UserError(message)
