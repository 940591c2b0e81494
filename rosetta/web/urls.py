from django.urls import path

from rosetta.web import resources, staff, views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("tasks/", views.task_list, name="tasks"),
    path("tasks/new/", views.task_new, name="task-new"),
    path("tasks/delete-finished", views.tasks_delete_finished, name="tasks-delete-finished"),
    path("tasks/<str:task_id>/", views.task_detail, name="task"),
    path("tasks/<str:task_id>/stop", views.task_stop, name="task-stop"),
    path("tasks/<str:task_id>/relaunch", views.task_relaunch, name="task-relaunch"),
    path("tasks/<str:task_id>/delete", views.task_delete, name="task-delete"),
    path("tasks/<str:task_id>/open", views.task_open, name="task-open"),
    path("catalog/", views.catalog, name="catalog"),
    path("resources/", resources.resource_list, name="resources"),
    path("resources/new/", resources.resource_new, name="resource-new"),
    path("resources/<slug:name>/", resources.resource_detail, name="resource"),
    path("resources/<slug:name>/check", resources.resource_check, name="resource-check"),
    path("resources/<slug:name>/toggle", resources.resource_toggle, name="resource-toggle"),
    path("account/remote-username", resources.remote_username, name="remote-username"),
    path("users/", staff.user_list, name="users"),
    path("users/<int:user_id>/toggle", staff.user_toggle, name="user-toggle"),
    path("users/<int:user_id>/reset-password", staff.user_reset_password, name="user-reset-password"),
    path("account/", views.account, name="account"),
    path("account/tokens/", views.token_create, name="token-create"),
    path("account/tokens/<int:token_id>/revoke", views.token_revoke, name="token-revoke"),
]
