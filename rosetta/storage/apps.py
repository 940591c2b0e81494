from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "rosetta.storage"
    label = "storage"
    verbose_name = "Storages"
