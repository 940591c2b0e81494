"""Valid names said beside a wrong one, in error messages."""

from collections.abc import Iterable

MAX_CHOICES_SAID = 20


def choices_said(names: Iterable[str], what: str) -> str:
    """ "; choose one of: a, b" (the first few of a long list), or that there is none yet."""
    names = sorted(set(names))
    if not names:
        return f"; there is no {what} yet"
    more = len(names) - MAX_CHOICES_SAID
    return f"; choose one of: {', '.join(names[:MAX_CHOICES_SAID])}" + (f" and {more} more" if more > 0 else "")
