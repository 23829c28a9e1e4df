"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

from .handler import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from .live import note_server_loop  # noqa: E402
from .routing import websocket_app  # noqa: E402

_router = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_app})


async def application(scope: dict, receive: object, send: object) -> None:
    note_server_loop()
    await _router(scope, receive, send)
