from __future__ import annotations

from azfed.dashboard.federation import views
from django.urls import re_path

urlpatterns = [re_path(r"^$", views.IndexView.as_view(), name="index")]
