from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "rosetta.tasks"
    label = "tasks"
