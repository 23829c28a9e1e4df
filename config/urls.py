from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from landlord import views as landlord_views
from landlord.auth_views import RateLimitedAdminLoginView, RateLimitedLoginView, SignOutView

from . import pwa, views

urlpatterns = [
    path("", landlord_views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", RateLimitedLoginView.as_view(), name="login"),
    path("accounts/logout/", SignOutView.as_view(), name="logout"),
    # The installable app: at the site root, so the service worker's scope is the whole site.
    path("manifest.webmanifest", pwa.manifest, name="manifest"),
    path("sw.js", pwa.service_worker, name="service_worker"),
    path("offline/", pwa.offline, name="offline"),
    # Password change and reset: Django's views, with the templates in templates/registration.
    path(
        "accounts/password/change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password/change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/password/reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("tenant/", include("landlord.urls_tenant")),
    path("invite/", include("landlord.urls_invite")),
    path("landlord/", include("landlord.urls")),
    path("payments/", include("payments.urls")),
    path("", include("disputes.urls")),
    path("api/v1/", include("landlord.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Before the admin's own URLs: its sign-in page shares the failure limit.
    path("admin/login/", RateLimitedAdminLoginView.as_view(), name="admin-login"),
    path("admin/", admin.site.urls),
]
