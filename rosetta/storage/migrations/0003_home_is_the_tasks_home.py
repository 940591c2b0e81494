"""The `home` storage becomes the tasks' home itself (/home/rosetta), ticked by default: before,
it was a folder inside a scratch home (/home/rosetta/home) and unticked, so work outside it was
lost when a task stopped. Only an installation that kept the old defaults is changed."""

from django.db import migrations

OLD_MOUNT_POINT = "/home/rosetta/home"
OLD_DESCRIPTION = "Your own folder on this machine; tasks on local see it as ~/home."
NEW_DESCRIPTION = "Your own folder on this machine: the home of your tasks on local, kept from task to task."


def home_at_the_home(apps, schema_editor):
    Storage = apps.get_model("storage", "Storage")
    Storage.objects.filter(name="home", mount_point=OLD_MOUNT_POINT, description=OLD_DESCRIPTION).update(
        description=NEW_DESCRIPTION
    )
    Storage.objects.filter(name="home", mount_point=OLD_MOUNT_POINT).update(
        mount_point="/home/rosetta", mounted_by_default=True
    )


def home_inside_the_home(apps, schema_editor):
    Storage = apps.get_model("storage", "Storage")
    Storage.objects.filter(name="home", description=NEW_DESCRIPTION).update(description=OLD_DESCRIPTION)
    Storage.objects.filter(name="home", mount_point="/home/rosetta").update(
        mount_point=OLD_MOUNT_POINT, mounted_by_default=False
    )


class Migration(migrations.Migration):
    dependencies = [("storage", "0002_id_ranges")]

    operations = [migrations.RunPython(home_at_the_home, home_inside_the_home)]
