from django.contrib.auth import views as auth_views
from django.urls import path

from rosetta.web import catalog, files, resources, views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tasks/", views.task_list, name="tasks"),
    path("tasks/new/", views.task_new, name="task-new"),
    path("tasks/<str:task_id>/", views.task_detail, name="task"),
    path("tasks/<str:task_id>/stop", views.task_stop, name="task-stop"),
    path("tasks/<str:task_id>/delete", views.task_delete, name="task-delete"),
    path("tasks/<str:task_id>/open", views.task_open, name="task-open"),
    path("catalog/", catalog.catalog, name="catalog"),
    path("catalog/new/", catalog.software_new, name="software-new"),
    path("catalog/<int:software_id>/", catalog.software_detail, name="software"),
    path("catalog/<int:software_id>/status", catalog.software_status, name="software-status"),
    path("catalog/builds/<int:build_id>/", catalog.software_build, name="software-build"),
    path("files/", files.storage_list, name="storages"),
    path("files/<slug:name>/", files.file_manager, name="files"),
    path("resources/", resources.resource_list, name="resources"),
    path("resources/new/", resources.resource_new, name="resource-new"),
    path("resources/<slug:name>/", resources.resource_detail, name="resource"),
    path("resources/<slug:name>/check", resources.resource_check, name="resource-check"),
    path("resources/<slug:name>/toggle", resources.resource_toggle, name="resource-toggle"),
    path("account/remote-username", resources.remote_username, name="remote-username"),
    path("account/", views.account, name="account"),
    path("account/tokens/", views.token_create, name="token-create"),
    path("account/tokens/<int:token_id>/revoke", views.token_revoke, name="token-revoke"),
    path("account/keys/", views.ssh_key_add, name="ssh-key-add"),
    path("account/keys/<int:key_id>/remove", views.ssh_key_remove, name="ssh-key-remove"),
]
