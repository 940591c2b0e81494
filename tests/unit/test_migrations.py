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
