"""The platform's registry for real: Debian's docker-registry, skopeo and podman, a Rosetta
started with `rosetta run`, and — when the test bed is up — rootless podman on a test bed host
pulling exactly the recorded digest across the bridge."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from rosetta.catalog.models import RegistryState, Software
from rosetta.catalog.pushes import image_for
from rosetta.computing.models import Resource
from rosetta.registry.config import free_port, public_config, write_config
from rosetta.registry.push import MANIFEST_TYPES, Writer, podman_env, push_image
from tests.instance import Platform

HELLO = "localhost/rosetta/hello"
TESTBED = Path("/var/lib/rosetta-testbed/testbed.json")
REMOTE = Resource(name="cluster", transport="ssh", scheduler="slurm")


def manifest_digest(address: str, path: str, reference: str) -> str | None:
    response = httpx.head(f"http://{address}/v2/{path}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES})
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


def skopeo_copy(source: str, destination: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *options, source, destination],
        capture_output=True, text=True, env=podman_env(), timeout=120,
    )  # fmt: skip


def wait_until_answers(url: str, timeout: float = 5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            httpx.get(url, timeout=1)
            return time.monotonic() - started
        except httpx.HTTPError:
            time.sleep(0.01)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def bridge_address() -> str | None:
    """The bridge address when the test bed is up (this machine holds it), else None."""
    if not TESTBED.exists():
        return None
    bridge = json.loads(TESTBED.read_text())["bridge"]["address"]
    with socket.socket() as sock:
        try:
            sock.bind((bridge, 0))
        except OSError:
            return None
    return bridge


# --- the registry processes on their own ----------------------------------------------------------


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A public (read-only) registry and a private writer over one storage, as the platform runs them."""
    monkeypatch.setenv("ROSETTA_HOME", str(tmp_path))
    public = f"127.0.0.1:{free_port('127.0.0.1')}"
    config = write_config(tmp_path / "registry" / "config.yml", public_config(public))
    started = time.monotonic()
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stderr=subprocess.DEVNULL)
    try:
        ready = wait_until_answers(f"http://{public}/v2/")
        print(f"\npublic registry ready in {ready:.3f} s (spawn included: {time.monotonic() - started:.3f} s)")
        assert ready < 1.0
        with Writer() as writer:
            yield public, writer
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_pulls_are_public_and_pushes_need_the_writers_password(registry):
    public, writer = registry
    assert httpx.get(f"http://{public}/v2/").status_code == 200
    assert httpx.get(f"http://{writer.address}/v2/").status_code == 401
    refused = skopeo_copy(f"containers-storage:{HELLO}", f"docker://{public}/rosetta/hello:latest")
    assert refused.returncode != 0 and "405" in refused.stderr  # read-only: no one pushes here
    refused = skopeo_copy(f"containers-storage:{HELLO}", f"docker://{writer.address}/rosetta/hello:latest")
    assert refused.returncode != 0 and "authentication required" in refused.stderr
    assert writer.authfile.stat().st_mode & 0o777 == 0o600


def test_a_pushed_image_is_served_by_the_digest_recorded(registry):
    public, writer = registry
    pushed = push_image(HELLO, writer)
    print(f"\npush of {HELLO}: {pushed.seconds:.3f} s")
    assert manifest_digest(public, "rosetta/hello", pushed.digest) == pushed.digest
    assert manifest_digest(public, "rosetta/hello", "latest") == pushed.digest
    local_id = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", HELLO], capture_output=True, text=True, env=podman_env()
    ).stdout.strip()
    assert pushed.source == local_id
    config = httpx.get(
        f"http://{public}/v2/rosetta/hello/manifests/{pushed.digest}", headers={"Accept": MANIFEST_TYPES}
    )
    assert config.json()["config"]["digest"] == f"sha256:{local_id}"  # the very image of this machine


def test_retagging_changes_nothing_a_task_runs(registry, settings):
    """Someone pushes another image under the catalogue entry's tag (here with the writer's own
    password: the worst case). The tag moves; what a resource is handed does not."""
    public, writer = registry
    settings.REGISTRY_LISTEN = public
    original = push_image(HELLO, writer)
    software = Software(
        name="hello", image=HELLO, registry_state=RegistryState.PUSHED, registry_digest=original.digest,
        registry_image=HELLO, registry_source=original.source,
    )  # fmt: skip
    before = image_for(software, REMOTE)
    with tempfile.TemporaryDirectory() as context:
        Path(context, "Containerfile").write_text(f"FROM {HELLO}\nLABEL rosetta.test=retagged\n")
        subprocess.run(
            ["podman", "build", "--quiet", "--pull=never", "--tag", "localhost/rosetta-test/retagged", context],
            check=True, capture_output=True, env=podman_env(),
        )  # fmt: skip
    attack = skopeo_copy(
        "containers-storage:localhost/rosetta-test/retagged",
        f"docker://{writer.address}/rosetta/hello:latest",
        "--dest-authfile", str(writer.authfile),
    )  # fmt: skip
    assert attack.returncode == 0, attack.stderr
    moved = manifest_digest(public, "rosetta/hello", "latest")
    assert moved and moved != original.digest  # the tag now names the other image
    after = image_for(software, REMOTE)
    assert after == before == f"{public}/rosetta/hello@{original.digest}"
    assert manifest_digest(public, "rosetta/hello", original.digest) == original.digest  # still served as it was
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}} {{.Labels}}", f"docker://{after}"],
        capture_output=True, text=True, env=podman_env(), check=True,
    ).stdout  # fmt: skip
    assert inspected.startswith(original.digest) and "retagged" not in inspected


# --- a platform's registry ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A Rosetta whose registry listens on the test bed's bridge when the test bed is up (a port of
    its own: others may use 5000), else on this machine's loopback."""
    host = bridge_address() or "127.0.0.1"
    address = f"{host}:{free_port(host)}"
    instance = Platform(tmp_path_factory.mktemp("rosetta"), settings={"ROSETTA_REGISTRY_LISTEN": address})
    instance.home.mkdir(parents=True, exist_ok=True)
    instance.setup_output = instance.rosetta("setup").stdout
    started = time.monotonic()
    instance.start()
    print(f"\nrosetta run up in {time.monotonic() - started:.2f} s")
    instance.registry = address
    yield instance
    instance.stop()


def recorded(platform, name: str) -> dict:
    script = (
        "import json; from rosetta.catalog.models import Software; "
        f"s = Software.objects.get(name={name!r}); "
        "fields = ('image', 'registry_state', 'registry_digest', 'registry_reason'); "
        "print(json.dumps({k: getattr(s, k) for k in fields}))"
    )
    return json.loads(platform.rosetta("manage", "shell", "-c", script).stdout.strip().splitlines()[-1])


def test_the_platform_runs_its_registry_and_pushed_hello_at_setup(platform):
    assert wait_until_answers(f"http://{platform.registry}/v2/") < 5
    assert httpx.get(f"http://{platform.registry}/v2/").status_code == 200
    assert f"Copied {HELLO} (hello) to the platform's registry as sha256:" in platform.setup_output
    hello = recorded(platform, "hello")
    assert hello["registry_state"] == "pushed" and hello["registry_digest"].startswith("sha256:")
    assert manifest_digest(platform.registry, "rosetta/hello", hello["registry_digest"]) == hello["registry_digest"]
    listing = platform.rosetta("registry", "list").stdout
    assert f"{platform.registry}/rosetta/hello@{hello['registry_digest']}" in listing


def test_software_added_through_the_api_is_pushed_in_the_background(platform):
    token = platform.create_user("registry-admin", admin=True)
    entries = {
        "hello-again": HELLO,  # this machine's: pushed
        "not-built": "localhost/lab/not-built:1.0",  # this machine's, missing: failed, with the reason
    }
    with platform.api(token) as client:
        for name, image in entries.items():
            started = time.monotonic()
            response = client.post("/api/software", json={"name": name, "image": image})
            assert response.status_code == 201, response.text
            assert time.monotonic() - started < 2  # the request does not wait for the push
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = {name: recorded(platform, name) for name in entries}
        if all(state["registry_state"] in ("pushed", "failed") for state in states.values()):
            break
        time.sleep(0.2)
    assert states["hello-again"]["registry_state"] == "pushed"
    assert states["hello-again"]["registry_digest"] == recorded(platform, "hello")["registry_digest"]
    assert states["not-built"]["registry_state"] == "failed"
    assert states["not-built"]["registry_reason"] == "Image localhost/lab/not-built:1.0 does not exist on this machine."


def test_a_test_bed_host_pulls_exactly_the_recorded_digest(platform):
    if bridge_address() is None:
        pytest.skip(f"the test bed is not up ({TESTBED} missing or its bridge address not on this machine)")
    ssh_config = json.loads(TESTBED.read_text())["ssh"]["config"]
    digest = recorded(platform, "hello")["registry_digest"]
    reference = f"{platform.registry}/rosetta/hello@{digest}"

    def alice(*argv: str) -> subprocess.CompletedProcess:
        command = ["ssh", "-F", ssh_config, "alice@10.231.0.10", shlex.join(argv)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    alice("podman", "rmi", "--ignore", reference)  # a pull, not what an earlier run left in her store
    started = time.monotonic()
    # Over plain HTTP: the test bed trusts 10.231.0.1:5000 as insecure, and this registry has a port of its own.
    pulled = alice("podman", "pull", "--quiet", "--tls-verify=false", reference)
    print(f"\npull on the test bed host, over ssh: {time.monotonic() - started:.2f} s")
    assert pulled.returncode == 0, pulled.stderr
    inspected = alice("podman", "image", "inspect", "--format", "{{.Digest}}", reference)
    assert inspected.stdout.strip() == digest
    alice("podman", "rmi", "--ignore", reference)
