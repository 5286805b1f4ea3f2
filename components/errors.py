"""Errors a user's input or settings can cause, shared by every domain and stage."""
import time


class InputError(ValueError):
    """An input file cannot be used (unreadable, truncated, empty...); `str()` is one line
    naming why. Domains subclass it (AudioReadError, ImageReadError); stages print it."""


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (or its type's name when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class SafetyStop(RuntimeError):
    """Training ran past its wall-clock safety stop. Budgets are epochs, so a model never
    depends on how fast the machine was; this stop only aborts a run that is far off its
    expected time (a hung or starved machine), loudly, instead of cutting it short into a
    different model. The stage that knows the setting's params key reports it."""


def check_safety_stop(safety_minutes: float | None, start: float, epoch: int) -> None:
    """Raise SafetyStop when more than `safety_minutes` (None: no stop) have passed since
    `start` (a time.perf_counter() reading); training loops call it after each epoch."""
    elapsed = time.perf_counter() - start
    if safety_minutes is not None and elapsed > safety_minutes * 60:
        raise SafetyStop(f"training passed its safety stop of {safety_minutes:g} min "
                         f"({elapsed / 60:.2f} min, after epoch {epoch}); aborted rather than cut short")
