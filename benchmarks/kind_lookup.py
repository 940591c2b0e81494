"""The registry of backend kinds against the names it replaced, side by side in one run.

    .venv/bin/python benchmarks/kind_lookup.py [--rounds 200000]

1. The controller computes every resource's backend key on each pass; where it compared the
   transport's name with "local", it now asks the registry whether the kind is local
   (``Resource.is_local``). Timed: the backend key of a local resource, both ways.
2. A process's first use loads every kind (the built-in modules and the entry points of every
   installed distribution); before, backends.py imported the same modules. Timed in fresh
   interpreters (median of 7, interleaved): importing the modules, and loading the registry.

Prints both and the ratios. Never gates CI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = "; ".join(f"import {reference.partition(':')[0]}" for reference in (
    "rosetta.computing.transports.local", "rosetta.computing.transports.ssh", "rosetta.computing.schedulers.direct",
    "rosetta.computing.schedulers.slurm", "rosetta.computing.engines.podman", "rosetta.computing.engines.docker",
    "rosetta.computing.engines.apptainer",
))  # fmt: skip
REGISTRY = "from rosetta.computing import kinds; kinds.of('scheduler')"


def by_name(resource) -> tuple:
    """The backend key as it was computed before the registry: the transport named."""
    transport = (resource.transport, resource.node) if resource.transport == "local" else (resource.transport,)
    return (*transport, resource.scheduler, resource.engine, resource.work_dir)


def per_call(function, resource, rounds: int) -> float:
    began = time.perf_counter()
    for _ in range(rounds):
        function(resource)
    return (time.perf_counter() - began) / rounds * 1e9


def cold(*codes: str) -> list[float]:
    """Each code's median time in a fresh interpreter (ms), the runs interleaved: a busy machine
    slows both alike."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "rosetta.settings"}
    times: list[list[float]] = [[] for _ in codes]
    for _ in range(7):
        for index, code in enumerate(codes):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
            times[index].append(time.perf_counter() - began)
    return [statistics.median(each) * 1000 for each in times]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200_000)
    rounds = parser.parse_args().rounds
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rosetta.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from rosetta.computing.models import Resource

    resource = Resource(name="local", transport="local", node="here")
    resource.backend_key()  # the registry's first load is measured apart (below)
    named, registry = per_call(by_name, resource, rounds), per_call(Resource.backend_key, resource, rounds)
    print(f"backend key, transport by name:     {named:8.0f} ns")
    print(f"backend key, transport by registry: {registry:8.0f} ns   ratio {registry / named:.2f}")
    imports, loaded = cold(MODULES, REGISTRY)
    print(f"first use, importing the modules:   {imports:8.0f} ms")
    print(f"first use, loading the registry:    {loaded:8.0f} ms   ratio {loaded / imports:.2f}")


if __name__ == "__main__":
    main()
