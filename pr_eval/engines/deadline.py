"""A time limit on a whole HTTP request, not on each read.

httpx's timeouts (and so the `openai` client's) bound each network operation: a server that
sends one byte every 0.2 s never trips a 5 s read timeout, and a request could take minutes.
`client(total_s)` is an httpx client for the `openai` package whose transport stops reading a
response once `total_s` seconds have passed since the request was sent, with the
`httpx.ReadTimeout` the client reports as a timeout (retried by the engine and the judge like
any other). Each single read is still bounded by `total_s` as before, which also bounds a server
that stalls before its first byte. With `max_bytes`, a reply body larger than that is not read
on (a hostile server's megabytes): the request fails as a broken connection.
"""

from __future__ import annotations

import time

try:  # the HTTP library the `openai` package is built on: httpx2 in the locked openai, httpx before it
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx


class _Timed(httpx.SyncByteStream):
    def __init__(self, stream, deadline: float, total_s: float, request: httpx.Request, max_bytes: int | None):
        self.stream, self.deadline, self.total_s, self.request = stream, deadline, total_s, request
        self.max_bytes, self.read = max_bytes, 0

    def __iter__(self):
        for chunk in self.stream:
            if time.monotonic() > self.deadline:
                raise httpx.ReadTimeout(f"the whole request took more than {self.total_s:g} s", request=self.request)
            self.read += len(chunk)
            if self.max_bytes is not None and self.read > self.max_bytes:
                raise httpx.RemoteProtocolError(f"the reply is larger than {self.max_bytes} bytes", request=self.request)
            yield chunk

    def close(self) -> None:
        self.stream.close()


class DeadlineTransport(httpx.HTTPTransport):
    def __init__(self, total_s: float, max_bytes: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.total_s, self.max_bytes = total_s, max_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.total_s
        response = super().handle_request(request)
        if time.monotonic() > deadline:
            response.close()
            raise httpx.ReadTimeout(f"the whole request took more than {self.total_s:g} s", request=request)
        response.stream = _Timed(response.stream, deadline, self.total_s, request, self.max_bytes)
        return response


def client(total_s: float, max_bytes: int | None = None):
    """An httpx client for `openai.OpenAI(http_client=...)` whose requests end after `total_s`
    (and whose replies are read up to `max_bytes`)."""
    import openai

    return openai.DefaultHttpxClient(transport=DeadlineTransport(total_s, max_bytes), timeout=total_s)
