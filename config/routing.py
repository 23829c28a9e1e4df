"""WebSocket routes.

Device sockets carry no browser Origin and authenticate with their own
credential; browser sockets use the session and must come from an allowed
Origin (config/origin.py).
"""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from landlord.consumers import LiveConsumer
from meters.sockets.base import DeviceSocket
from meters.sockets.native import NativeAdapter
from meters.sockets.shelly import ShellyAdapter

from .origin import SameOriginValidator

# One socket class for every device protocol; the adapter speaks the wire format.
device_routes = URLRouter([path("v1", DeviceSocket.as_asgi(adapter=NativeAdapter))])
# A Shelly cannot send headers: its secret is part of the address it is given.
shelly_routes = URLRouter(
    [path("<str:ident>/<str:secret>", DeviceSocket.as_asgi(adapter=ShellyAdapter))]
)

browser_routes = SameOriginValidator(
    AuthMiddlewareStack(
        URLRouter(
            [
                path(
                    "tenancy/<int:tenancy_id>/",
                    LiveConsumer.as_asgi(),
                    {"scope_kind": "tenancy"},
                ),
                path("landlord/", LiveConsumer.as_asgi(), {"scope_kind": "landlord"}),
            ]
        )
    )
)

websocket_app = URLRouter(
    [
        path("ws/device/", device_routes),
        path("ws/shelly/", shelly_routes),
        # A prefix match: the router inside the middleware resolves the rest.
        re_path(r"^ws/live/", browser_routes),
        # Any other path is refused at the handshake (HTTP 403). Without this
        # the router raises, the server answers 500 and logs a traceback
        # quoting the path, which for a Shelly holds its secret.
        re_path(r"", WebsocketDenier.as_asgi()),
    ]
)
