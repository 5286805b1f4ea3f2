"""Errors a user's input can cause, shared by every domain and stage."""


class InputError(ValueError):
    """An input file cannot be used (unreadable, truncated, empty...); `str()` is one line
    naming why. Domains subclass it (AudioReadError, ImageReadError); stages print it."""


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (or its type's name when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
