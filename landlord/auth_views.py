"""Sign-in with a limit on failed attempts per account and per address."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse

from config import ratelimit

SCOPE = "login"


def _idents(request: HttpRequest) -> list[str]:
    username = str(request.POST.get("username", "")).strip().lower()
    address = ratelimit.client_address(request.META)
    return [f"user:{username}", f"addr:{address}"]


class RateLimitedLoginView(auth_views.LoginView):
    template_name = "registration/login.html"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        cfg = settings.SUBMETER
        if any(
            ratelimit.is_limited(scope=SCOPE, ident=i, limit=int(cfg["LOGIN_MAX_FAILURES"]))
            for i in _idents(request)
        ):
            form = self.get_form()
            form.errors.clear()
            context = self.get_context_data(form=form, locked_out=True)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        for ident in _idents(self.request):
            ratelimit.hit(
                scope=SCOPE,
                ident=ident,
                window_seconds=int(settings.SUBMETER["LOGIN_WINDOW_SECONDS"]),
            )
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        ratelimit.reset(scope=SCOPE, ident=_idents(self.request)[0])
        return super().form_valid(form)


class RateLimitedAdminLoginView(RateLimitedLoginView):
    """The admin's sign-in page (as ``AdminSite.login`` builds it), under the same
    failure counters: failures on either page count towards one limit."""

    template_name = "admin/login.html"
    authentication_form = AdminAuthenticationForm

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "GET" and admin.site.has_permission(request):
            return HttpResponseRedirect(self.get_success_url())
        request.current_app = admin.site.name
        return super().dispatch(request, *args, **kwargs)

    def get_default_redirect_url(self) -> str:
        return reverse("admin:index", current_app=admin.site.name)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            admin.site.each_context(self.request),
            title="Log in",
            subtitle=None,
            app_path=self.request.get_full_path(),
            username=self.request.user.get_username(),
        )
        return context


class SignOutView(auth_views.LogoutView):
    """Sign out, and have the browser drop what it kept of the session's pages.

    ``Clear-Site-Data`` removes this site's local storage (the last balance
    the offline page shows), its caches and its service worker, with the push
    subscription tied to it, so the next person on this phone sees nothing of
    the last one's. Browsers honour it over HTTPS (and on localhost).
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        response["Clear-Site-Data"] = '"cache", "storage"'
        return response
