"""WebSocket paths nothing serves are refused at the handshake, not answered with an error."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application


@pytest.mark.parametrize(
    "path",
    [
        "/ws/nope",
        "/ws/",
        "/",
        "/ws/device/",
        "/ws/device/v1/extra",
        "/ws/device/v2",
        "/ws/shelly/shellyplus1pm-a8032ab12345",
        "/ws/shelly/shellyplus1pm-a8032ab12345/s3cret/extra",
        "/ws/live/nope/",
    ],
)
async def test_unmatched_paths_are_refused_at_the_handshake(path):
    comm = WebsocketCommunicator(
        application, path, headers=[(b"origin", b"http://testserver"), (b"host", b"testserver")]
    )
    # The application closes the handshake (the server answers HTTP 403)
    # instead of raising, which the server would answer with a 500.
    connected, _code = await comm.connect(timeout=5)
    assert not connected
    await comm.wait(timeout=5)
