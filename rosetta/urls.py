from django.urls import include, path

from rosetta.api.views import api

urlpatterns = [
    path("api/", api.urls),
    path("", include("rosetta.web.urls")),
]
