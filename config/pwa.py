"""The installable app: the web app manifest, the service worker and its offline page.

The service worker is served from the site root (``/sw.js``) so its scope is
the whole site; it is a template so it names the static files it keeps for
offline use by their real URLs, and its version changes whenever one of them
does, which makes browsers install the new worker and drop the old cache.
It keeps only public files: pages and JSON are always fetched from the
network and never stored (templates/sw.js says how).
"""

from __future__ import annotations

import functools
import hashlib
import json

from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import get_template
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

THEME_COLOUR = "#0b62d6"
BACKGROUND_COLOUR = "#f6f7f9"
ICON_SIZES = (192, 512)

# What the offline page needs, and the tenant home's own files (kept so a
# reload while offline draws quickly and in the page's style).
SHELL_FILES = (
    "app.css",
    "app.js",
    "pwa.js",
    "django_htmx/htmx-2.min.js",
    "django_htmx/ext/hx-ws-2.min.js",
    "django_htmx/django-htmx.js",
    *(f"icons/icon-{size}.png" for size in ICON_SIZES),
    "icons/icon-maskable-512.png",
)


@functools.cache
def shell_version() -> str:
    """A digest of the shell's files: a new one when any of them changes."""
    digest = hashlib.sha256()
    paths = [finders.find(name) for name in SHELL_FILES]
    # The worker and the offline page are templates: their sources count too.
    paths += [get_template(name).template.origin.name for name in ("sw.js", "offline.html")]  # type: ignore[attr-defined]
    for path in paths:
        if isinstance(path, str):
            with open(path, "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()[:16]


@require_safe
@cache_control(max_age=3600, public=True)
def manifest(request: HttpRequest) -> JsonResponse:
    icons = [
        {"src": static(f"icons/icon-{size}.png"), "sizes": f"{size}x{size}", "type": "image/png"}
        for size in ICON_SIZES
    ]
    icons.append(
        {
            "src": static("icons/icon-maskable-512.png"),
            "sizes": "512x512",
            "type": "image/png",
            "purpose": "maskable",
        }
    )
    data = {
        "name": "Submeter",
        "short_name": "Submeter",
        "description": "Your electricity balance, usage and payments.",
        "id": "/",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "orientation": "portrait",
        "background_color": BACKGROUND_COLOUR,
        "theme_color": THEME_COLOUR,
        "icons": icons,
    }
    return JsonResponse(data, content_type="application/manifest+json")


@require_safe
@cache_control(no_cache=True)
def service_worker(request: HttpRequest) -> HttpResponse:
    response = render(
        request,
        "sw.js",
        {
            "version": shell_version(),
            "offline_url": reverse("offline"),
            "shell_json": json.dumps([static(name) for name in SHELL_FILES]),
            "static_prefix_json": json.dumps(static("")),
        },
        content_type="text/javascript; charset=utf-8",
    )
    response["Service-Worker-Allowed"] = "/"
    return response


@require_safe
@cache_control(max_age=3600, public=True)
def offline(request: HttpRequest) -> HttpResponse:
    """The page the service worker shows for any page it cannot fetch: no one's data
    in it (it is cached for every visitor); static/pwa.js fills in the last
    balance this browser saw, with its age."""
    return render(request, "offline.html", {"theme_colour": THEME_COLOUR})
