import io

import pytest
from django.core.management import call_command

OLD_DESCRIPTION = "Your own folder on this machine; tasks on local see it as ~/home."


@pytest.mark.django_db
def test_models_and_committed_migrations_agree():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # exits non-zero on a missing migration
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_home_storage_becomes_the_tasks_home_only_where_it_kept_its_old_defaults():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("storage", "0002_id_ranges")], [("storage", "0003_home_is_the_tasks_home")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("storage", "Storage")
    old.objects.create(name="home", base_path="/srv/{username}", mount_point="/home/rosetta/home",
                       mounted_by_default=False, description=OLD_DESCRIPTION)  # fmt: skip
    old.objects.create(name="chosen", base_path="/srv/c/{username}", mount_point="/work", mounted_by_default=False)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    new = executor.loader.project_state(after).apps.get_model("storage", "Storage")
    home = new.objects.get(name="home")
    assert (home.mount_point, home.mounted_by_default) == ("/home/rosetta", True)
    assert "the home of your tasks" in home.description
    chosen = new.objects.get(name="chosen")
    assert (chosen.mount_point, chosen.mounted_by_default) == ("/work", False)


@pytest.mark.django_db(transaction=True)
def test_a_home_storage_an_operator_moved_stays_where_it_is():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("storage", "0002_id_ranges")], [("storage", "0003_home_is_the_tasks_home")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("storage", "Storage")
    old.objects.create(name="home", base_path="/srv/{username}", mount_point="/home/rosetta/work",
                       mounted_by_default=False, description="Ours.")  # fmt: skip
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    home = executor.loader.project_state(after).apps.get_model("storage", "Storage").objects.get(name="home")
    assert (home.mount_point, home.mounted_by_default, home.description) == ("/home/rosetta/work", False, "Ours.")


@pytest.mark.django_db(transaction=True)
def test_an_upgraded_machine_keeps_its_local_resources_and_ssh_ones_belong_to_no_machine(settings):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("computing", "0004_remote_names_checked_and_shared")], [("computing", "0005_machines")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("computing", "Resource")
    old.objects.create(name="local", transport="local")
    old.objects.create(name="cluster", transport="ssh", host="login", scheduler="slurm")
    settings.NODE = "upgraded-machine"
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    new = executor.loader.project_state(after).apps.get_model("computing", "Resource")
    assert dict(new.objects.values_list("name", "node")) == {"local": "upgraded-machine", "cluster": ""}


@pytest.mark.django_db(transaction=True)
def test_slurm_columns_become_the_scheduler_s_options_of_resources_and_tasks():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("computing", "0005_machines"), ("tasks", "0008_task_records")]
    after = [("computing", "0006_kind_options"), ("tasks", "0009_scheduler_options")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    old = apps.get_model("computing", "Resource")
    cluster = old.objects.create(name="cluster", transport="ssh", scheduler="slurm", partition="long",
                                 time_limit_minutes=90)  # fmt: skip
    old.objects.create(name="here", transport="local", scheduler="none", partition="", time_limit_minutes=60)
    owner = apps.get_model("auth", "User").objects.create(username="ada")
    from rosetta.catalog.models import Software  # the catalogue stays as it is now

    software = Software.objects.create(name="hello", image="localhost/hello")
    tasks = apps.get_model("tasks", "Task").objects
    tasks.create(id="tbatch", owner=owner, name="a", software_id=software.pk, resource=cluster, partition="debug",
                 time_limit_minutes=30)  # fmt: skip
    tasks.create(id="tplain", owner=owner, name="b", software_id=software.pk, resource=cluster)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    apps = executor.loader.project_state(after).apps
    resources = apps.get_model("computing", "Resource").objects
    assert resources.get(name="cluster").scheduler_options == {"partition": "long", "time_limit_minutes": 90}
    assert resources.get(name="here").scheduler_options == {}
    tasks = apps.get_model("tasks", "Task").objects
    assert tasks.get(id="tbatch").scheduler_options == {"partition": "debug", "time_limit_minutes": 30}
    assert tasks.get(id="tplain").scheduler_options == {}
