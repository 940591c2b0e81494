from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "rosetta.accounts"
    label = "accounts"

    def ready(self) -> None:
        from rosetta.accounts import signals

        signals.connect()
