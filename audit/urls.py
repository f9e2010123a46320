"""The compliance workspace: the trail, one entry, receipts, the dashboard, exports, verify."""

from django.urls import path

from . import views

app_name = "compliance"

urlpatterns = [
    path("", views.event_list, name="list"),
    path("events/<int:pk>/", views.event_detail, name="detail"),
    path("events/<int:pk>/receipt.json", views.event_receipt, name="receipt"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("export.<str:fmt>", views.export, name="export"),
    path("verify/", views.verify, name="verify"),
]
