"""Errors a user can cause.

Every error that bad input, a bad path or a bad config value can trigger is a ``UserError``: the CLI
prints its message as one line (no traceback) and exits with status 2. Messages name the thing
(file, column, key, value) and say what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input, config or data: shown as one line, never a traceback."""


class BadImageError(UserError):
    """An image file that cannot be decoded (missing, empty, truncated, not an image)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"{self.path}: {reason} (fix or delete the file, or set on_bad_image=skip)"
        )


def did_you_mean(word: str, choices: Iterable[str], limit: int = 1) -> str:
    """Return ' (did you mean X?)' for the nearest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=limit, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
