"""Users' builds: Rosetta's API request → entry in the catalogue, against raw `podman build` of
the same Containerfile. Side by side in one run, alternating; with and without a RUN step (a
RUN step gets a network of its own, fenced in like a task's), and on a large base (jupyterlab:
the build's container gets its own copy of the images it uses, so their size counts).

    .venv/bin/python benchmarks/user_builds.py [--runs 3]

Prints medians and the platform's overhead as a ratio. Never gates CI.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from support import own_platform

CONTAINERFILES = {
    "no RUN": "FROM localhost/rosetta/hello\nENV N={n}\n",
    "one RUN": "FROM localhost/rosetta/hello\nRUN echo {n} > /tmp/n\n",
    "one RUN on jupyterlab": "FROM localhost/rosetta/jupyterlab\nRUN echo {n} > /tmp/n\n",
}


def raw_build(platform, text: str, tag: str) -> float:
    with tempfile.TemporaryDirectory() as context:
        Path(context, "Containerfile").write_text(text)
        started = time.perf_counter()
        platform.podman("build", "--quiet", "--pull=never", "--layers=false", "--tag", tag, context)
        elapsed = time.perf_counter() - started
    platform.podman("image", "rm", "--force", tag)
    return elapsed


def platform_build(api, text: str, name: str) -> float:
    started = time.perf_counter()
    build = api.post("/api/software/builds", json={"name": name, "containerfile": text}).raise_for_status().json()
    while (build := api.get(f"/api/software/builds/{build['id']}").json())["state"] not in ("succeeded", "failed"):
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    if build["state"] != "succeeded":
        raise RuntimeError(build["reason"])
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with own_platform() as platform:
        token = platform.create_user("bench")
        with platform.api(token) as api:
            for kind, template in CONTAINERFILES.items():
                raw, ours = [], []
                for n in range(runs):
                    text = template.format(n=n)
                    raw.append(raw_build(platform, text, f"localhost/bench/raw-{n}"))
                    ours.append(platform_build(api, text, f"{kind.replace(' ', '-').lower()}-{n}"))
                raw_median, our_median = statistics.median(raw), statistics.median(ours)
                print(
                    f"{kind:21}  raw podman build {raw_median * 1000:7.0f} ms   request → entry "
                    f"{our_median * 1000:7.0f} ms   ratio {our_median / raw_median:5.2f}   "
                    f"overhead {(our_median - raw_median) * 1000:+.0f} ms  (medians of {runs})"
                )


if __name__ == "__main__":
    main()
