from django.apps import AppConfig


class ComputingConfig(AppConfig):
    name = "rosetta.computing"
    label = "computing"
