"""Device sockets: one consumer for every device protocol, one adapter per protocol.

``base.DeviceSocket`` owns everything that does not depend on the wire
format: login and its rate limit, presence, the device group (a newer
connection replaces an older one), the command loop that drains the relay
outbox and the display notifications, and disconnect. A ``ProtocolAdapter``
only turns the protocol's frames into calls on the socket and the socket's
commands into frames:

* ``native.NativeAdapter``: native protocol v1 (docs/device-protocol.md,
  frames in ``meters/protocol.py``);
* ``shelly.ShellyAdapter``: Shelly Gen2+ outbound WebSocket JSON-RPC
  (docs/shelly.md, frames in ``meters/shelly.py``).

A route names the adapter: ``DeviceSocket.as_asgi(adapter=NativeAdapter)``
(config/routing.py).
"""
