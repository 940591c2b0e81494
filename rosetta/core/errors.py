"""Errors that user-facing layers (API, web, CLI) turn into clear 4xx answers."""


class NotFound(Exception):
    """404: the object does not exist, or the user may not know it does."""


class Conflict(Exception):
    """409: the request clashes with what exists (a duplicate name, say)."""
