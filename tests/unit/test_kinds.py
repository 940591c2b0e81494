"""The registry of backend kinds: built-in ones, plug-ins by entry point, their options and combinations."""

import sys
import threading
import tomllib
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from rosetta.computing import kinds
from rosetta.computing.models import Resource
from rosetta.computing.services import save_resource, scheduler_request

ROOT = Path(__file__).resolve().parents[2]

TOY_MODULE = """
from rosetta.computing.kinds import Kind, Options
from rosetta.computing.schedulers.direct import DirectBackend

class ToyOptions(Options):
    colour: str = "blue"

KIND = Kind("scheduler", "toy", "A toy", lambda transport, engine, resource: DirectBackend(transport, engine),
            options=ToyOptions)
NOT_A_KIND = object()
"""


def install_plugin(directory: Path, entries: dict[str, str], module: str = TOY_MODULE) -> None:
    """An installed distribution, as pip leaves one: a module and its dist-info with entry points."""
    (directory / "toy_kind.py").write_text(module)
    info = directory / "toy_kind-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-kind\nVersion: 0.1\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[rosetta.backends]\n{lines}")


@pytest.fixture
def plugin_path(tmp_path):
    sys.path.insert(0, str(tmp_path))
    kinds.reload()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("toy_kind", None)
    kinds.reload()


def test_the_built_in_kinds_are_there_and_declared_for_packaging_too():
    assert [kind.name for kind in kinds.of("transport")] == ["local", "ssh"]
    assert [kind.name for kind in kinds.of("scheduler")] == ["none", "slurm"]
    assert [kind.name for kind in kinds.of("engine")] == ["podman", "docker", "apptainer"]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][kinds.GROUP]
    assert sorted(declared.values()) == sorted(kinds.BUILT_IN)
    assert all(name == f"{kinds.find(*name.split('.')).role}.{kinds.find(*name.split('.')).name}" for name in declared)


def test_a_kind_installed_as_a_package_is_found_by_its_entry_point_and_a_broken_one_is_skipped(plugin_path, caplog):
    install_plugin(plugin_path, {"scheduler.toy": "toy_kind:KIND", "broken": "toy_kind:NOT_A_KIND",
                                 "missing": "no_such_module:KIND"})  # fmt: skip
    assert [kind.name for kind in kinds.of("scheduler")] == ["none", "slurm", "toy"]
    assert ("toy", "A toy") in kinds.scheduler_choices()
    assert "toy_kind:NOT_A_KIND is not a backend kind" in caplog.text
    assert "The backend kind missing (no_such_module:KIND) could not be loaded." in caplog.text


def test_first_use_from_many_threads_loads_once_and_everyone_sees_the_same_kinds(plugin_path):
    install_plugin(plugin_path, {"scheduler.toy": "toy_kind:KIND"})
    seen, start = [], threading.Barrier(8)

    def look() -> None:
        start.wait()
        seen.append(kinds.get("scheduler", "toy"))

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and all(kind is seen[0] for kind in seen)


def test_an_unknown_kind_is_refused_with_the_ones_there_are():
    with pytest.raises(ValidationError, match=r"There is no scheduler 'pbs' here; there are: none, slurm\."):
        kinds.get("scheduler", "pbs")


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"qos": "normal; rm -rf ~"}, "qos: String should match pattern"),
        ({"account": "$(id)"}, "account: String should match pattern"),
        ({"gres": "gpu:2 --wrap=x"}, "gres: String should match pattern"),
        ({"time_limit_minutes": "soon"}, "time_limit_minutes: Input should be a valid integer"),
        ({"colour": "red"}, "colour: unknown option"),
    ],
)
def test_bad_slurm_options_are_refused_naming_the_option(options, said):
    with pytest.raises(ValidationError, match=said):
        kinds.get("scheduler", "slurm").parse_options(options)


def test_good_slurm_options_keep_their_values_and_take_defaults():
    parsed = kinds.get("scheduler", "slurm").parse_options({"account": "astro", "qos": "long", "gres": "gpu:a100:2"})
    assert parsed.model_dump() == {"partition": "", "time_limit_minutes": 60, "account": "astro", "qos": "long",
                                   "gres": "gpu:a100:2"}  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "said"),
    [
        (dict(scheduler="slurm"), "A batch scheduler is reached over SSH"),
        (dict(engine="apptainer"), "Apptainer runs tasks inside batch jobs only"),
        (dict(transport="ssh"), "A resource reached over SSH needs a host."),
        (dict(transport="ssh", host="h"), "A service account needs a user name and a private key."),
        (dict(scheduler="pbs"), "There is no scheduler 'pbs' here"),
        (dict(colour="red"), "Unknown settings: colour."),
        (dict(transport="ssh", host="h", scheduler="slurm", qos="a b"), "qos: String should match"),
    ],
)
def test_combinations_and_options_a_kind_refuses_are_refused_on_save(fields, said):
    with pytest.raises(ValidationError, match=said):
        save_resource(Resource(name="refused"), **fields)
    assert not Resource.objects.filter(name="refused").exists()


@pytest.mark.django_db
def test_options_go_to_the_kind_that_has_them_and_another_kind_starts_afresh():
    resource = Resource(name="c", host_keys="x")
    save_resource(resource, transport="ssh", host="h", credentials="user", scheduler="slurm", partition="long",
                  account="astro")  # fmt: skip
    resource.refresh_from_db()
    assert resource.scheduler_options == {"partition": "long", "time_limit_minutes": 60, "account": "astro",
                                          "qos": "", "gres": ""}  # fmt: skip
    assert resource.is_batch and not resource.is_local
    save_resource(resource, scheduler="none")
    resource.refresh_from_db()
    assert resource.scheduler_options == {} and not resource.is_batch


@pytest.mark.django_db
def test_a_task_request_is_validated_by_the_resource_s_scheduler():
    cluster = save_resource(Resource(name="cluster"), transport="ssh", host="h", credentials="user", scheduler="slurm")
    here = save_resource(Resource(name="here"))
    asked = {"partition": "debug", "time_limit_minutes": 0, "qos": "high", "gres": ""}
    assert scheduler_request(cluster, asked) == {"partition": "debug", "qos": "high"}
    with pytest.raises(ValidationError, match="qos: String should match pattern"):
        scheduler_request(cluster, {"qos": "x|y"})
    with pytest.raises(ValidationError, match="colour: unknown option"):
        scheduler_request(cluster, {"colour": "red"})
    refusal = "here has no batch scheduler: it takes no partition or time limit nor qos .* Leave out the qos,"
    with pytest.raises(ValidationError, match=refusal):
        scheduler_request(here, {"qos": "high"})
