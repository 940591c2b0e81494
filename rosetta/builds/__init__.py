"""Users' own images, built from their Containerfiles (the builder process, rosetta.processes.builder).

- ``worker``: the queue, one build at a time, oldest first (a pass of rosetta.core.worker's loop);
- ``sandbox``: the isolated build — its container, place on disk, network, and what it hands back;
- ``images``: the images a build names, prepared once as read-only stores it may use;
- ``registration``: a built image recorded in the catalogue (or a failure and its reason);
- ``commands``, ``log``, ``limits``: the programs a build runs, its log, what it may take.

Then the pusher (rosetta.processes.pusher) copies each new image to the platform's registry, so
every resource runs it by digest.
"""
