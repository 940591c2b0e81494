from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "rosetta.accounts"
    label = "accounts"
