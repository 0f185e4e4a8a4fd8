"""Request bodies that a handler reads as a stream (uploads): no size limit, flat memory, backpressure.

Quart gives every request a `Body` that buffers whatever the connection delivers, limited by `MAX_CONTENT_LENGTH`
(16 MiB here), and decides that limit when the request is created, before any handler runs. A view marked
`@streams_body` instead gets a `StreamedBody` from the first byte: no total limit, and the connection's reader
waits while more than `HIGH_WATER` bytes are unread, so Hypercorn stops reading the socket (its own queue is
bounded) and a client sending gigabytes costs about a MiB of memory. The handler reads with `async for chunk in
request.body` (or `StreamedBody.receive`).

Wiring: `create_app` sets `app.asgi_http_class = StreamingHTTPConnection`; the connection looks up the view the
request will reach (the same URL map Quart matches later) and swaps the body when the view is marked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import trio
from quart import Quart
from quart.wrappers import Request
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import TrioBody
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RoutingException

F = TypeVar("F", bound=Callable[..., object])

log = logging.getLogger(__name__)

STREAMED_ATTRIBUTE = "_filmroll_streamed_body"
HIGH_WATER = 1 << 20
"""Unread bytes at which the connection stops reading from the client."""


def streams_body(view: F) -> F:
    """Mark a view whose handler reads `request.body` as a stream (no size limit; it must bound what it keeps)."""
    setattr(view, STREAMED_ATTRIBUTE, True)
    return view


class StreamedBody(TrioBody):
    """A request body without a size limit whose producer waits (`wait_for_room`) while `high_water` bytes are
    unread. Awaiting the whole body (`await body`) lifts the backpressure, since nothing else would drain it.
    Once the response has started, `abandon()` drops whatever else arrives (nobody will read it)."""

    def __init__(self, expected_content_length: int | None, high_water: int = HIGH_WATER) -> None:
        super().__init__(expected_content_length, None)
        self._high_water: float = high_water
        self._room = trio.Event()
        self._room.set()
        self._abandoned = False

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived (read or not)."""
        return self._complete.is_set()

    def append(self, data: bytes) -> None:
        if not self._abandoned:
            super().append(data)

    def abandon(self) -> None:
        """Nobody reads on: drop what is buffered and what still arrives, and never make the producer wait."""
        self._abandoned = True
        self._data.clear()
        self._high_water = math.inf
        self._room.set()

    async def __anext__(self) -> bytes:
        data = await super().__anext__()
        self._room.set()
        return data

    async def receive(self) -> bytes:
        """The next chunk, or b"" when the body is complete."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            return b""

    def __await__(self) -> Generator[Any, None, Any]:
        self._high_water = math.inf
        self._room.set()
        return super().__await__()

    async def wait_for_room(self) -> None:
        """Called by the connection after each chunk: returns once fewer than `high_water` bytes are unread."""
        while len(self._data) >= self._high_water and not self._complete.is_set():
            if self._room.is_set():
                self._room = trio.Event()
            await self._room.wait()


def _streams(app: Quart, request: Request) -> bool:
    try:
        adapter = app.create_url_adapter(request)
        if adapter is None:
            return False
        rule, _ = adapter.match(return_rule=True)
    except (HTTPException, RoutingException):
        return False  # unknown route or method: Quart answers it later, the default body is right
    view = app.view_functions.get(rule.endpoint)
    return bool(getattr(view, STREAMED_ATTRIBUTE, False))


class StreamingHTTPConnection(TrioASGIHTTPConnection):
    """Quart-Trio's HTTP connection, giving marked views a `StreamedBody` and honouring its backpressure.

    A handler may answer before it has read the whole body (a duplicate known from its checksum header, a
    refusal, a timeout). Hypercorn then closes the connection once the response is sent (the unread rest of the
    body makes it unusable). For streamed requests only:
    - the body is abandoned when the response starts, so the connection's reader never waits for room that
      nobody will make (it would block Hypercorn's own hand-over of `http.disconnect`);
    - a client that closes as soon as it has read the answer can race Hypercorn's last (empty) write of it; the
      collision is swallowed once the response has started (the client is gone);
    - Hypercorn reports `http.disconnect` from inside the send of the response (when it closes the stream), and
      Quart's reader cancels the request's tasks on it: that cancellation would land in Hypercorn's own close
      path and leave the connection neither closed nor reusable. Once the response has started, a disconnect
      therefore only ends the reader; the handler finishes sending. Before that, it cancels the handler as
      usual (the client went away mid-upload).
    """

    _streamed: StreamedBody | None = None
    _response_started = False

    def _create_request_from_scope(self, send: Any) -> Request:
        request = super()._create_request_from_scope(send)
        if _streams(self.app, request):
            self._streamed = StreamedBody(request.content_length)
            request.body = self._streamed
        return request

    async def __call__(self, receive: Any, send: Any) -> None:
        request_path = self.scope.get("path", "")

        async def send_response(message: Any) -> None:
            streamed = self._streamed
            if message["type"] == "http.response.start" and streamed is not None:
                self._response_started = True
                if not streamed.complete:  # Hypercorn closes such a connection: say so, or a client reuses it
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
                streamed.abandon()
            try:
                await send(message)
            except (trio.BusyResourceError, trio.ClosedResourceError, trio.BrokenResourceError):
                if not (self._response_started and streamed is not None):
                    raise
                # The client closed the connection while the end of the response was being written: Hypercorn's
                # reader closes the socket at the same moment and trio reports the collision. Nobody is left to
                # answer; the handler's work is done either way.
                log.debug("client left while its response was being sent: %s", request_path)

        await super().__call__(receive, send_response)

    async def handle_messages(self, nursery: trio.Nursery, request: Request, receive: Any) -> None:  # type: ignore[override]
        # Quart's loop (quart.asgi.ASGIHTTPConnection.handle_messages), waiting for room after each chunk.
        body = request.body
        while True:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
                elif isinstance(body, StreamedBody):
                    await body.wait_for_room()
            elif message["type"] == "http.disconnect":
                if self._streamed is not None and self._response_started:
                    return  # the answer is being sent: let the handler finish (see the class docstring)
                break
        nursery.cancel_scope.cancel()
