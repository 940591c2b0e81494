from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "rosetta.tasks"
    label = "tasks"

    def ready(self) -> None:
        from rosetta.accounts.signals import user_deactivated
        from rosetta.tasks import records  # noqa: F401 -- a deleted task's record is kept (its receiver)
        from rosetta.tasks.services import stop_tasks_of

        def stop_their_tasks(sender, user, **kwargs) -> int:
            return stop_tasks_of(user)

        user_deactivated.connect(stop_their_tasks, weak=False, dispatch_uid="rosetta.tasks.stop_tasks_of_deactivated")
