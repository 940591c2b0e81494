# A task's batch requests (partition, time limit) become its scheduler options, stored as JSON
# as the scheduler kind's request schema validates them (rosetta.computing.kinds).

from django.db import migrations, models


def columns_to_options(apps, schema_editor):
    Task = apps.get_model("tasks", "Task")
    asked = Task.objects.exclude(partition="", time_limit_minutes=0)
    for task in asked.only("pk", "partition", "time_limit_minutes").iterator():
        options = {"partition": task.partition, "time_limit_minutes": task.time_limit_minutes}
        Task.objects.filter(pk=task.pk).update(scheduler_options={k: v for k, v in options.items() if v})


def options_to_columns(apps, schema_editor):
    Task = apps.get_model("tasks", "Task")
    for task in Task.objects.exclude(scheduler_options={}).only("pk", "scheduler_options").iterator():
        options = task.scheduler_options or {}
        Task.objects.filter(pk=task.pk).update(
            partition=options.get("partition", ""), time_limit_minutes=options.get("time_limit_minutes", 0)
        )


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0008_task_records'),
    ]

    operations = [
        migrations.AddField(
            model_name='task',
            name='scheduler_options',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(columns_to_options, options_to_columns),
        migrations.RemoveField(
            model_name='task',
            name='partition',
        ),
        migrations.RemoveField(
            model_name='task',
            name='time_limit_minutes',
        ),
    ]
