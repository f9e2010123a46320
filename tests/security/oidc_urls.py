"""config.urls as it is with single sign-on on (OIDC_RP_CLIENT_ID set): the tests' settings
have it off, and config/urls.py decides which routes exist when it is imported."""

from django.urls import include, path

from config.urls import urlpatterns as portal

urlpatterns = [*portal, path("oidc/", include("mozilla_django_oidc.urls"))]
