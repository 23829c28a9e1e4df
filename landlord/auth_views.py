"""Sign-in with a limit on failed attempts per account and per address."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse

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
