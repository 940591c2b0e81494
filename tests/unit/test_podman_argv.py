import json

import pytest

from rosetta.computing.contract import ContainerSpec, Seen
from rosetta.computing.engines.base import KEPT_CAPABILITIES
from rosetta.computing.engines.podman import PodmanEngine
from rosetta.computing.errors import CutShort, ImageMissing, Refused, Unreachable
from rosetta.computing.transports.base import CommandResult, command_name

SPEC = ContainerSpec(
    task_id="tabc",
    instance="i1",
    image="localhost/rosetta/hello",
    port=8080,
    cpus=1.5,
    memory_mb=256,
    env={"GREETING": "$(touch /tmp/pwned); echo `id` | rm -rf /", "EMPTY": ""},
)


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


def test_every_task_is_hardened():
    argv = PodmanEngine().run_argv(SPEC)
    assert argv[argv.index("--memory-swap") + 1] == "256m"  # no swap beyond the memory limit
    assert argv[argv.index("--security-opt") + 1] == "no-new-privileges"
    assert "--read-only" in argv and argv[argv.index("--tmpfs") + 1] == "/home/rosetta:rw,size=256m,U"
    assert argv[argv.index("--log-opt") + 1] == "max-size=10m"
    dropped = set(argv[argv.index("--cap-drop") + 1].split(","))
    assert {"NET_RAW", "MKNOD", "SYS_ADMIN", "SETFCAP", "SYS_CHROOT"} <= dropped
    assert not dropped & KEPT_CAPABILITIES and "--cap-add" not in argv  # added ones would go to non-root users too


def test_on_this_machine_a_task_has_its_own_network_and_ids_and_publishes_nothing():
    engine = PodmanEngine(task_networks=True, user_namespaces=True)
    argv = engine.run_argv(SPEC)
    assert argv[argv.index("--network") + 1] == "rosetta-tabc" and "--publish" not in argv
    assert "--userns=auto:size=65536" in argv
    create = engine.network_create_argv(SPEC)
    assert create[-1] == "rosetta-tabc" and "isolate=true" in create and "--disable-dns" in create


def test_env_values_never_appear_in_the_argv():
    argv = PodmanEngine().run_argv(SPEC, env_file="/srv/work/tabc.env")
    assert argv[argv.index("--env-file") + 1] == "/srv/work/tabc.env" and "--env" not in argv
    assert not any("pwned" in word for word in argv)
    # One NAME=value line each, literal: no shell ever sees it, and an empty value still has
    # its "=" (a bare NAME would copy the host's variable into the container).
    assert PodmanEngine().env_file(SPEC).decode().splitlines() == [
        "GREETING=$(touch /tmp/pwned); echo `id` | rm -rf /",
        "EMPTY=",
    ]


def test_tasks_without_outbound_access_get_networks_from_the_closed_pool():
    engine = PodmanEngine(containers_conf="/c/open.conf", closed_containers_conf="/c/closed.conf", task_networks=True)
    closed = ContainerSpec(**{**SPEC.__dict__, "outbound": False})
    assert engine.network_create_argv(SPEC)[1] == "CONTAINERS_CONF=/c/open.conf"
    assert engine.network_create_argv(closed)[1] == "CONTAINERS_CONF=/c/closed.conf"
    assert engine.run_argv(closed)[1] == "CONTAINERS_CONF=/c/open.conf"  # everything else shares one configuration


def test_inspect_gives_the_address_on_the_task_network():
    output = json.dumps(
        [
            {
                "Id": "c1",
                "Image": "img",
                "Config": {"Labels": {"rosetta.task": "t1"}},
                "State": {"Status": "running", "ExitCode": 0},
                "NetworkSettings": {"Networks": {"rosetta-t1": {"IPAddress": "10.123.0.2"}}},
            }
        ]
    )
    [seen] = PodmanEngine(task_networks=True).parse_inspect(output, 8080)
    assert seen.endpoint == ("10.123.0.2", 8080) and seen.state is Seen.RUNNING
    assert seen.backend_state == {"container": "c1"}


def test_containers_conf_is_passed_through_env_so_any_transport_carries_it():
    argv = PodmanEngine(containers_conf="/srv/rosetta/containers.conf").list_argv("i1")
    assert argv[:3] == ["env", "CONTAINERS_CONF=/srv/rosetta/containers.conf", "podman"]
    assert argv[-2:] == ["--filter", "label=rosetta.instance=i1"]


def test_whole_cpus_are_written_as_integers():
    spec = ContainerSpec(task_id="t", instance="i", image="x", port=1, cpus=2.0, memory_mb=64)
    argv = PodmanEngine().run_argv(spec)
    assert argv[argv.index("--cpus") + 1] == "2"


def test_parse_list_reads_state_exit_code_and_published_port():
    output = json.dumps(
        [
            {
                "Labels": {"rosetta.task": "t1"},
                "State": "running",
                "Exited": False,
                "ExitCode": 0,
                "ImageID": "abc",
                "Ports": [{"host_ip": "127.0.0.1", "container_port": 8080, "host_port": 41234, "protocol": "tcp"}],
            },
            {"Labels": {"rosetta.task": "t2"}, "State": "exited", "Exited": True, "ExitCode": 3, "Ports": []},
            {"Labels": {"other": "x"}, "State": "running"},
        ]
    )
    seen = {s.task_id: s for s in PodmanEngine().parse_list(output)}
    assert set(seen) == {"t1", "t2"}
    assert seen["t1"].state is Seen.RUNNING and seen["t1"].endpoint == ("127.0.0.1", 41234)
    assert seen["t1"].exit_code is None and seen["t1"].image_id == "abc"
    assert seen["t2"].state is Seen.ENDED and seen["t2"].exit_code == 3 and seen["t2"].endpoint is None


@pytest.mark.parametrize(
    ("state", "seen"),
    [
        ("created", Seen.STARTING),
        ("running", Seen.RUNNING),
        ("exited", Seen.ENDED),
        ("paused", Seen.UNKNOWN),
    ],
)
def test_podman_states_in_neutral_words(state, seen):
    output = json.dumps([{"Labels": {"rosetta.task": "t"}, "State": state, "Id": "c0ffee"}])
    [observation] = PodmanEngine().parse_list(output)
    assert observation.state is seen and observation.backend_state == {"container": "c0ffee"}


def test_parse_list_of_nothing():
    assert PodmanEngine().parse_list("") == [] and PodmanEngine().parse_list("null") == []


def test_stop_keeps_the_container_for_its_logs_and_remove_is_forced_and_idempotent():
    assert PodmanEngine().stop_argv("t1", 5) == ["podman", "stop", "--ignore", "--time", "5", "rosetta-t1"]
    assert PodmanEngine().remove_argv("t1") == ["podman", "rm", "--force", "--ignore", "--time", "0", "rosetta-t1"]
    assert PodmanEngine().network_remove_argv("t1") == ["podman", "network", "rm", "rosetta-t1"]


def _failed(stderr: str) -> CommandResult:
    return CommandResult(("podman", "run"), 125, "", stderr)


PULL_FAILED = (
    'time="2026" level=warning msg="Failed, retrying in 1s ... (1/3). Error: ..."\n'
    "Error: initializing source docker://localhost/x:1.0: pinging container registry localhost: "
    'Get "https://localhost/v2/": dial tcp 127.0.0.1:443: connect: connection refused'
)


def test_a_missing_image_is_said_plainly_with_the_engines_words_kept():
    spec = ContainerSpec(task_id="t", instance="i", image="localhost/x:1.0", port=1, cpus=1, memory_mb=64)
    error = PodmanEngine().refusal(_failed(PULL_FAILED), spec)
    assert isinstance(error, ImageMissing) and not error.transient
    assert error.explain("local") == "Image localhost/x:1.0 does not exist on local."
    assert error.detail.startswith("Error: initializing source docker://localhost/x:1.0")
    assert isinstance(PodmanEngine().refusal(_failed("Error: localhost/x:1.0: image not known"), spec), ImageMissing)


def test_a_name_in_use_is_transient_other_refusals_are_not():
    spec = ContainerSpec(task_id="t", instance="i", image="x", port=1, cpus=1, memory_mb=64)
    in_use = PodmanEngine().refusal(
        _failed('Error: creating container storage: the container name "rosetta-t" is already in use'), spec
    )
    assert isinstance(in_use, Unreachable) and in_use.transient
    refused = PodmanEngine().refusal(_failed("Error: OCI runtime error: runc: invalid mount"), spec)
    assert type(refused) is Refused and refused.detail == "Error: OCI runtime error: runc: invalid mount"


def test_an_overlay_mount_refused_while_the_store_is_busy_is_cut_short_not_a_program_refused():
    spec = ContainerSpec(task_id="t", instance="i", image="x", port=1, cpus=1, memory_mb=64)
    said = (
        "Error: mounting storage for container 0a1b: creating overlay mount to /var/lib/containers/storage/"
        'overlay/9f/merged, mount_data="lowerdir=/var/lib/containers/storage/overlay/l/AB": permission denied'
    )
    error = PodmanEngine().refusal(_failed(said), spec)
    assert isinstance(error, CutShort) and error.transient and error.detail == said


def test_a_program_the_container_cannot_start_is_named():
    spec = ContainerSpec(task_id="t", instance="i", image="x", port=1, cpus=1, memory_mb=64)
    runc = "Error: runc: runc create failed: unable to start container process: "
    denied = runc + 'exec: "/run/podman-init": stat /run/podman-init: permission denied: OCI permission denied'
    refused = PodmanEngine().refusal(_failed(denied), spec)
    assert refused.explain("local") == (
        "The container could not start /run/podman-init: permission denied. The image's files (its / among "
        "them) must be readable by the user it runs as."
    )
    missing = runc + 'exec: "jupyter": executable file not found in $PATH: OCI runtime attempted to invoke a command'
    assert PodmanEngine().refusal(_failed(missing), spec).explain("local") == (
        "The container could not start jupyter: the image has no such program."
    )


def test_commands_are_named_as_people_call_them():
    assert command_name(["env", "CONTAINERS_CONF=/x/containers.conf", "/usr/bin/podman", "ps", "--all"]) == "podman ps"
    assert command_name(["squeue", "--me"]) == "squeue"


def test_logs_follow_and_tail():
    assert PodmanEngine().logs_argv("t1", follow=True, tail=10) == [
        "podman",
        "logs",
        "--follow",
        "--tail",
        "10",
        "rosetta-t1",
    ]


def test_storages_are_bound_with_their_owners_ids_here_and_as_the_account_elsewhere():
    from dataclasses import replace

    from rosetta.computing.contract import Mount
    from rosetta.computing.engines.docker import DockerEngine

    spec = replace(SPEC, mounts=(Mount("/srv/home/ada", "/home/rosetta/home"), Mount("/data", "/data", True)),
                   id_base=1000065536)  # fmt: skip
    here = PodmanEngine(task_networks=True, user_namespaces=True).run_argv(spec)
    assert "type=bind,source=/srv/home/ada,destination=/home/rosetta/home" in here
    assert "type=bind,source=/data,destination=/data,ro=true" in here
    assert here[here.index("--uidmap") + 1] == "0:1000065536:65536" and not any("--userns" in w for w in here)
    elsewhere = PodmanEngine().run_argv(spec)
    assert "--userns=keep-id:uid=1000,gid=1000" in elsewhere  # what the task writes is the account's
    job = PodmanEngine().job_steps(spec, "/x/env").prepare
    assert "--userns=keep-id:uid=1000,gid=1000" in job and "type=bind,source=/data,destination=/data,ro=true" in job
    assert "type=bind,source=/data,target=/data,readonly" in DockerEngine().run_argv(spec)
    assert "--mount" not in PodmanEngine().run_argv(SPEC) and "--userns=keep-id:uid=1000,gid=1000" not in (
        PodmanEngine().run_argv(SPEC)
    )


def test_task_networks_are_listed_by_instance_and_named_by_their_task():
    engine = PodmanEngine(task_networks=True)
    assert engine.network_list_argv("i1")[-2:] == ["--filter", "label=rosetta.instance=i1"]
    listed = '[{"name": "rosetta-t1", "labels": {"rosetta.task": "t1", "rosetta.instance": "i1"}}, {"name": "x"}]'
    assert engine.parse_network_list(listed) == ["t1"]
    assert engine.parse_network_list("[]") == []


def test_a_storage_mounted_at_the_home_is_the_home_and_no_scratch_hides_it():
    from dataclasses import replace

    from rosetta.computing.contract import Mount

    at_home = replace(SPEC, mounts=(Mount("/srv/home/ada", "/home/rosetta"), Mount("/data", "/data", True)),
                      id_base=1000065536)  # fmt: skip
    for argv in (
        PodmanEngine(task_networks=True, user_namespaces=True).run_argv(at_home),
        PodmanEngine().run_argv(at_home),
        PodmanEngine().job_steps(at_home, "/x/env").prepare,  # inside a Slurm job
    ):
        assert "--tmpfs" not in argv and "type=bind,source=/srv/home/ada,destination=/home/rosetta" in argv
    # A storage elsewhere leaves the home scratch space, as without storages.
    inside = replace(SPEC, mounts=(Mount("/srv/home/ada", "/home/rosetta/home"),), id_base=1000065536)
    for argv in (PodmanEngine().run_argv(inside), PodmanEngine().job_steps(inside, "/x/env").prepare):
        assert argv[argv.index("--tmpfs") + 1] == "/home/rosetta:rw,size=256m,U"


def test_task_networks_go_in_batches_and_the_ones_removed_are_read_back():
    engine = PodmanEngine(task_networks=True)
    assert engine.networks_remove_argv(["t1", "t2"]) == ["podman", "network", "rm", "rosetta-t1", "rosetta-t2"]
    said = CommandResult(("podman",), 1, "rosetta-t1\nrosetta-t3\n", "Error: unable to find network rosetta-t2")
    assert engine.networks_removed(said) == {"t1", "t3"}


def test_events_of_an_instances_containers_are_read_as_coming_or_going():
    engine = PodmanEngine()
    argv = engine.events_argv("i1", 1700000000.5)
    assert argv[:4] == ["podman", "events", "--format", "json"]
    assert "label=rosetta.instance=i1" in argv and argv[-2:] == ["--since", "1700000000.500"]

    def event(status: str, **attributes) -> str:
        labels = {"rosetta.task": "t1", "rosetta.instance": "i1", **attributes}
        return json.dumps({"ID": "c1", "Status": status, "Type": "container", "Attributes": labels})

    died = engine.parse_event(event("died"))
    assert died.task_id == "t1" and not died.coming and died.container == "c1"
    assert engine.parse_event(event("start")).coming
    assert engine.parse_event(event("exec_died")) is None  # changes nothing `ps` says
    assert engine.parse_event(json.dumps({"Status": "died", "Type": "container", "Attributes": {}})) is None
    assert engine.parse_event('time="..." level=warning msg="something"') is None


def test_output_is_read_from_the_log_file_as_podman_logs_prints_it():
    from rosetta.computing.engines.podman import k8s_file_lines

    log = (
        b"2026-12-06T20:07:39.1+00:00 stdout F first\n"
        b"2026-12-06T20:07:39.2+00:00 stderr F second, with  two spaces\n"
        b"2026-12-06T20:07:39.3+00:00 stdout P a long line \n"
        b"2026-12-06T20:07:39.4+00:00 stdout F in two parts\n"
        b"2026-12-06T20:07:39.5+00:00 stdout F \n"
        b"2026-12-06T20:07:39.6+00:00 stdout P no newline at the end"
    )
    everything = b"first\nsecond, with  two spaces\na long line in two parts\n\nno newline at the end"
    assert k8s_file_lines(log, 5000, whole=True) == everything
    assert k8s_file_lines(log, 2, whole=True) == b"a long line in two parts\n\nno newline at the end"
    assert k8s_file_lines(log[10:], 5000, whole=False) == everything.partition(b"\n")[2]  # began mid-record
    assert k8s_file_lines(b"", 10, whole=True) == b""


def test_log_files_are_known_only_for_the_k8s_file_driver():
    container_id = "a" * 64
    path = f"/var/lib/containers/storage/overlay-containers/{container_id}/userdata/ctr.log"

    def inspected(log_type: str) -> str:
        return json.dumps([{"Id": container_id, "HostConfig": {"LogConfig": {"Type": log_type, "Path": path}}}])

    assert PodmanEngine().log_files(inspected("k8s-file")) == {container_id: path}
    assert PodmanEngine().log_files(inspected("journald")) == {}
