# A resource's kinds come from a registry (rosetta.computing.kinds) and own their options:
# the Slurm-only columns become the scheduler's options, stored as JSON.

import rosetta.computing.kinds
from django.db import migrations, models


def columns_to_options(apps, schema_editor):
    Resource = apps.get_model("computing", "Resource")
    for resource in Resource.objects.exclude(scheduler="none"):
        options = {"time_limit_minutes": resource.time_limit_minutes}
        if resource.partition:
            options["partition"] = resource.partition
        Resource.objects.filter(pk=resource.pk).update(scheduler_options=options)


def options_to_columns(apps, schema_editor):
    Resource = apps.get_model("computing", "Resource")
    for resource in Resource.objects.all():
        options = resource.scheduler_options or {}
        Resource.objects.filter(pk=resource.pk).update(
            partition=options.get("partition", ""), time_limit_minutes=options.get("time_limit_minutes", 60)
        )


class Migration(migrations.Migration):

    dependencies = [
        ('computing', '0005_machines'),
    ]

    operations = [
        migrations.AddField(
            model_name='resource',
            name='engine_options',
            field=models.JSONField(blank=True, default=dict, help_text="Validated by the engine's kind."),
        ),
        migrations.AddField(
            model_name='resource',
            name='scheduler_options',
            field=models.JSONField(blank=True, default=dict, help_text="Validated by the scheduler's kind."),
        ),
        migrations.AddField(
            model_name='resource',
            name='transport_options',
            field=models.JSONField(blank=True, default=dict, help_text="Validated by the transport's kind."),
        ),
        migrations.RunPython(columns_to_options, options_to_columns),
        migrations.RemoveField(
            model_name='resource',
            name='partition',
        ),
        migrations.RemoveField(
            model_name='resource',
            name='time_limit_minutes',
        ),
        migrations.AlterField(
            model_name='resource',
            name='engine',
            field=models.CharField(choices=rosetta.computing.kinds.engine_choices, default='podman', max_length=16),
        ),
        migrations.AlterField(
            model_name='resource',
            name='scheduler',
            field=models.CharField(choices=rosetta.computing.kinds.scheduler_choices, default='none', max_length=16),
        ),
        migrations.AlterField(
            model_name='resource',
            name='transport',
            field=models.CharField(choices=rosetta.computing.kinds.transport_choices, default='local', max_length=16),
        ),
    ]
