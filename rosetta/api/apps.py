from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "rosetta.api"
    label = "api"
