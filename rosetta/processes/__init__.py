"""Rosetta's long-running processes: one entry module each, named for it, and one table of them
(``table.PROCESSES``) that `rosetta run` (``run``, with ``supervisor``) starts them from, that the
CLI's per-process commands (`rosetta NAME`) and the systemd units (deploy/systemd/) agree with.

Each entry module holds the process's click command and nothing else of its logic: what the
process does lives in its capability's package (the gateway in rosetta.gateway, the builder in
rosetta.builds, ...).
"""
