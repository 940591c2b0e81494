import json
from dataclasses import replace

from rosetta.computing.contract import ContainerSpec, Seen
from rosetta.computing.engines.docker import DockerEngine
from rosetta.computing.errors import ImageMissing, Refused, Unreachable
from rosetta.computing.transports.base import CommandResult

SPEC = ContainerSpec(task_id="tabc", instance="i1", image="localhost/rosetta/hello", port=8080, cpus=0.5, memory_mb=128,
                     env={"SECRET": "never in argv"})  # fmt: skip


def test_a_docker_task_is_hardened_published_on_loopback_and_its_environment_kept_out_of_argv():
    argv = DockerEngine().run_argv(SPEC, env_file=".rosetta/work/tabc.env")
    assert argv[:3] == ["docker", "run", "--detach"] and argv[-1] == "localhost/rosetta/hello"
    assert argv[argv.index("--publish") + 1] == "127.0.0.1::8080"
    assert argv[argv.index("--memory-swap") + 1] == "128m" and "--read-only" in argv
    assert argv[argv.index("--security-opt") + 1] == "no-new-privileges"
    assert argv[argv.index("--cap-drop") + 1] == "ALL" and "NET_RAW" not in argv
    assert argv[argv.index("--env-file") + 1] == ".rosetta/work/tabc.env" and not any("never" in w for w in argv)
    # The root is read-only; the home and the usual scratch places are private and writable.
    tmpfs = [argv[at + 1].split(":")[0] for at, word in enumerate(argv) if word == "--tmpfs"]
    assert sorted(tmpfs) == ["/home/rosetta", "/run", "/tmp", "/var/tmp"]


def test_the_task_secret_is_in_the_environment_file_only():
    spec = replace(SPEC, secret="s3cret" * 8)
    assert b"ROSETTA_TASK_SECRET=" + b"s3cret" * 8 + b"\n" in DockerEngine.env_file(spec)
    assert not any("s3cret" in word for word in DockerEngine().run_argv(spec, env_file="e.env"))
    assert "s3cret" not in repr(spec)


def test_docker_listing_is_read_from_its_one_json_object_per_line():
    lines = [
        {"ID": "c1", "Labels": "rosetta.instance=i1,rosetta.task=t1", "State": "running", "Status": "Up 2 minutes",
         "Ports": "127.0.0.1:49153->8080/tcp"},
        {"ID": "c2", "Labels": "rosetta.task=t2,rosetta.instance=i1", "State": "exited",
         "Status": "Exited (3) 1 second ago", "Ports": ""},
        {"ID": "c3", "Labels": "other=x", "State": "running", "Status": "Up", "Ports": ""},
    ]  # fmt: skip
    seen = {s.task_id: s for s in DockerEngine().parse_list("\n".join(map(json.dumps, lines)) + "\n")}
    assert set(seen) == {"t1", "t2"}
    assert seen["t1"].state is Seen.RUNNING and seen["t1"].endpoint == ("127.0.0.1", 49153)
    assert seen["t2"].state is Seen.ENDED and seen["t2"].exit_code == 3
    assert seen["t2"].backend_state == {"container": "c2"}


def test_docker_inspect_reads_the_published_port_and_a_memory_kill():
    output = json.dumps(
        [
            {
                "Id": "c1",
                "Image": "sha256:1",
                "Config": {"Labels": {"rosetta.task": "t1"}},
                "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True},
                "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40001"}]}},
            }
        ]
    )
    [seen] = DockerEngine().parse_inspect(output, 8080)
    assert seen.state is Seen.ENDED and seen.exit_code == 137 and "out of memory" in seen.reason
    assert seen.endpoint == ("127.0.0.1", 40001)


def test_docker_refusals_are_classified():
    def refusal(stderr: str):
        return DockerEngine().refusal(CommandResult(("docker", "run"), 125, "", stderr), SPEC)

    assert isinstance(refusal("Unable to find image 'localhost/rosetta/hello:latest' locally\n"
                              "docker: Error response from daemon: pull access denied"), ImageMissing)  # fmt: skip
    assert isinstance(refusal("Cannot connect to the Docker daemon at unix:///run/docker.sock"), Unreachable)
    assert type(refusal("docker: Error response from daemon: invalid mount config")) is Refused


def test_a_docker_task_whose_home_is_a_storage_gets_no_scratch_home():
    from rosetta.computing.contract import Mount

    argv = DockerEngine().run_argv(replace(SPEC, mounts=(Mount("/srv/ada", "/home/rosetta"),)))
    tmpfs = [argv[at + 1].split(":")[0] for at, word in enumerate(argv) if word == "--tmpfs"]
    assert sorted(tmpfs) == ["/run", "/tmp", "/var/tmp"] and "type=bind,source=/srv/ada,target=/home/rosetta" in argv
