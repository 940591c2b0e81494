from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "rosetta.web"
    label = "web"
