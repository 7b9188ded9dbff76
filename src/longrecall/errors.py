"""User-facing errors: one line that names the fix, printed by the CLI without a traceback."""
from __future__ import annotations


class UserError(Exception):
    """Bad input or environment. The message is one line and says how to fix it."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class NotFound(UserError):
    """Nothing matched (a question the memory holds nothing about): not bad input, but no answer; exit code 1."""

    exit_code = 1


def require(condition: bool, message: str) -> None:
    """Raise UserError(message) unless condition holds."""
    if not condition:
        raise UserError(message)
