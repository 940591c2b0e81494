import json

from rosetta.computing.engines.base import ContainerSpec
from rosetta.computing.engines.podman import PodmanEngine

SPEC = ContainerSpec(task_id="tabc", instance="i1", image="localhost/rosetta/hello", port=8080, cpus=1.5, memory_mb=256,
                     env={"GREETING": "$(touch /tmp/pwned); echo `id` | rm -rf /", "EMPTY": ""})


def test_run_argv_has_limits_labels_loopback_port_and_image_last():
    argv = PodmanEngine().run_argv(SPEC)
    assert argv[:3] == ["podman", "run", "--detach"]
    assert "--init" in argv
    assert argv[argv.index("--name") + 1] == "rosetta-tabc"
    assert "rosetta.task=tabc" in argv and "rosetta.instance=i1" in argv
    assert argv[argv.index("--publish") + 1] == "127.0.0.1::8080"
    assert argv[argv.index("--cpus") + 1] == "1.50"
    assert argv[argv.index("--memory") + 1] == "256m"
    assert argv[-1] == "localhost/rosetta/hello"


def test_env_values_are_single_literal_arguments():
    argv = PodmanEngine().run_argv(SPEC)
    values = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--env"]
    # Each variable is one NAME=value element: no shell ever sees it, and an empty value
    # still has its "=" (a bare NAME would copy the host's variable into the container).
    assert values == ["GREETING=$(touch /tmp/pwned); echo `id` | rm -rf /", "EMPTY="]


def test_containers_conf_is_passed_through_env_so_any_transport_carries_it():
    argv = PodmanEngine(containers_conf="/srv/rosetta/containers.conf").list_argv("i1")
    assert argv[:3] == ["env", "CONTAINERS_CONF=/srv/rosetta/containers.conf", "podman"]
    assert argv[-2:] == ["--filter", "label=rosetta.instance=i1"]


def test_whole_cpus_are_written_as_integers():
    spec = ContainerSpec(task_id="t", instance="i", image="x", port=1, cpus=2.0, memory_mb=64)
    argv = PodmanEngine().run_argv(spec)
    assert argv[argv.index("--cpus") + 1] == "2"


def test_parse_list_reads_state_exit_code_and_published_port():
    output = json.dumps([
        {"Labels": {"rosetta.task": "t1"}, "State": "running", "Exited": False, "ExitCode": 0, "ImageID": "abc",
         "Ports": [{"host_ip": "127.0.0.1", "container_port": 8080, "host_port": 41234, "protocol": "tcp"}]},
        {"Labels": {"rosetta.task": "t2"}, "State": "exited", "Exited": True, "ExitCode": 3, "Ports": []},
        {"Labels": {"other": "x"}, "State": "running"},
    ])
    statuses = {s.task_id: s for s in PodmanEngine().parse_list(output)}
    assert set(statuses) == {"t1", "t2"}
    assert statuses["t1"].is_running and statuses["t1"].host_port == 41234 and statuses["t1"].exit_code is None
    assert statuses["t2"].has_ended and statuses["t2"].exit_code == 3 and statuses["t2"].host_port is None


def test_parse_list_of_nothing():
    assert PodmanEngine().parse_list("") == [] and PodmanEngine().parse_list("null") == []


def test_remove_is_forced_idempotent_and_bounded():
    assert PodmanEngine().remove_argv("t1", 5) == ["podman", "rm", "--force", "--ignore", "--time", "5", "rosetta-t1"]


def test_logs_follow_and_tail():
    assert PodmanEngine().logs_argv("t1", follow=True, tail=10) == ["podman", "logs", "--follow", "--tail", "10", "rosetta-t1"]
