from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "rosetta.catalog"
    label = "catalog"
