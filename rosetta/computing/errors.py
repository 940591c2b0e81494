class ComputingError(Exception):
    """A resource refused or failed a command; the message is meant for the task's events."""
