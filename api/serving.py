"""Byte responses (originals, thumbnails, playback) from an already opened, read-only descriptor.

The daemon opens the file (`open_original` for originals: confined and checked on the descriptor), and this module
streams it with `pread`, so nothing re-opens a path that could have been swapped. Quart's own conditional logic
answers `Range` (206 with `Content-Range`, 416 with `bytes */size`), `If-None-Match` / `If-Modified-Since`
(304) and `If-Range`; the descriptor is closed when the response ends, whatever happens.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from types import TracebackType
from urllib.parse import quote

import trio
from quart import Response, request
from quart.wrappers.response import ResponseBody
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from daemon.asset_service import OpenedFile

CHUNK = 1 << 18


class DescriptorBody(ResponseBody):
    """An open descriptor, streamed in `pread` chunks (threads: a slow disk never stalls the event loop).
    Owns the descriptor: it is closed on exit, or by `close()` if the body is never sent."""

    def __init__(self, descriptor: int, size: int):
        self.descriptor = descriptor
        self.size = size
        self.begin = 0
        self.end = size
        self.headers_only = False
        """HEAD: the server sends no body, so none is read."""
        self._closed = False

    async def __aenter__(self) -> DescriptorBody:
        return self

    async def __aexit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.descriptor)

    def __del__(self) -> None:  # a response dropped before it was sent (e.g. a 304) still closes the file
        self.close()

    def __aiter__(self) -> DescriptorBody:
        return self

    async def __anext__(self) -> bytes:
        if self.begin >= self.end or self.headers_only:
            raise StopAsyncIteration
        length = min(CHUNK, self.end - self.begin)
        chunk = await trio.to_thread.run_sync(os.pread, self.descriptor, length, self.begin)
        if not chunk:  # the file shrank under us: end the body rather than loop
            raise StopAsyncIteration
        self.begin += len(chunk)
        return chunk

    async def make_conditional(self, begin: int, end: int | None) -> int:
        if begin < 0:  # a suffix range, `bytes=-500`: the last 500 bytes
            begin, end = max(0, self.size + begin), None
        self.begin = begin
        self.end = self.size if end is None else min(self.size, end)
        if not 0 <= self.begin < self.end <= self.size:
            raise RequestedRangeNotSatisfiable(length=self.size)
        return self.size


async def file_response(opened: OpenedFile, *, cache_control: str, attachment: bool = False) -> Response:
    """A 200/206/304/416 response for `opened` (which it takes ownership of).

    Only a single `bytes` range is honoured; a multi-range, another unit or an unparsable header is ignored (200
    with the whole file), as RFC 9110 allows. The response has no time limit: a large original on a slow link
    must not be cut off by Quart's default 60 s."""
    body = DescriptorBody(opened.descriptor, opened.size)
    try:
        response = Response(body, mimetype=opened.mime_type)
        response.timeout = None
        response.content_length = opened.size
        response.set_etag(opened.etag)
        response.last_modified = datetime.fromtimestamp(opened.mtime_ns / 1e9, UTC)
        response.headers["Cache-Control"] = cache_control
        response.headers["Accept-Ranges"] = "bytes"
        if attachment:
            response.headers["Content-Disposition"] = content_disposition(opened.file_name)
        body.headers_only = request.method == "HEAD"
        wanted = request.range
        usable = "Range" not in request.headers or (
            wanted is not None and wanted.units == "bytes" and len(wanted.ranges) == 1
        )
        await response.make_conditional(
            request, accept_ranges=True, complete_length=opened.size if usable else None
        )
        if response.response is not body:  # a 304 replaced the body: the file is not needed
            body.close()
        return response
    except BaseException:
        body.close()
        raise


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and RFC 5987 `filename*` for anything else."""
    fallback = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    fallback = "".join(c if c.isprintable() else "_" for c in fallback)
    # a name from disk that is not UTF-8 (surrogate escapes) shows U+FFFD, as `originalFileName` does
    shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(shown, safe='')}"
