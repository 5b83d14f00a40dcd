"""The OpenAI-compatible engine: one chat-completions request per conversation, to any server that
speaks the OpenAI API (a `vllm serve` of the checkpoint, several of them, or a hosted model).

Against a vLLM server the model sees what the offline engine gives it:
- the prompt is the checkpoint's chat template, rendered by the server from the same messages;
- images travel losslessly, each encoded once per trajectory (pr_eval.engines.media), so the
  server decodes the exact pixels: inline as data URLs (BMP: uncompressed, quick to write; PNG to
  servers that are not vLLM's), or with `media_dir` as BMP files in a folder the server reads
  too (`file://` URLs; `vllm serve --allowed-local-media-path DIR`), which keeps every request
  small however many images its conversation holds;
- a video travels as ONE `video_url` whose data URL is `data:video/jpeg;base64,<f1>,<f2>,...`.
  vLLM reads that form as a list of already-extracted frames (`VideoMediaIO.load_base64`): it
  decodes each with PIL (which reads the PNG bytes we send whatever the label says) and gives
  the processor the metadata fps (from `media_io_kwargs`: the protocol's `video_fps`),
  frames_indices=0..n-1, do_sample_frames=False, the same the offline engine passes, so the
  frames are neither re-sampled nor re-encoded and their time steps are the offline engine's. (The server keeps at
  most `--media-io-kwargs '{"video": {"num_frames": N}}'` frames, 32 by default; 16 fit.)
- the protocol's pixel bounds and video frame rate are sent with every request (vLLM's
  per-request `mm_processor_kwargs` and `media_io_kwargs`), and checked once per server before
  the first question by the prompt tokens of known images and a video (pr_eval.engines.served):
  a server that shows them otherwise is refused, naming the flag to start it with;
- every sampling setting is sent explicitly. A vLLM server fills a missing one from the
  checkpoint's generation_config.json (`--generation-config auto`; Qwen checkpoints typically set
  repetition_penalty and top_k there), which the offline engine, given full SamplingParams, never
  applies; sending them keeps the two engines on one protocol.

Failures are sorted by what can be done about them: a wrong key (401/403) or a model the server
does not serve (404) stops the run with an `EngineError` that names the fix; a lost connection,
a timeout, 429 or 5xx is retried with exponential backoff (on another server when there are
several); a request that still fails, or that the server rejects (400: prompt too long, ...),
gets `GenerationResult.error` and the loop records that trajectory as an engine error.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Callable, Sequence
from urllib.parse import urlsplit

from ..loop.chat import IM_END
from ..protocol import Decoding, Protocol
from . import deadline, served
from .base import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, EngineError, GenerationRequest, GenerationResult
from .media import EncodedImages, SharedFolder, image_data_url, to_openai_messages, video_data_url  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


def normalize_base_url(url: str) -> str:
    """`http://host:8000` -> `http://host:8000/v1` (vLLM's and OpenAI's API root); a URL with a
    path is kept as given."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EngineError(f"base URL {url!r} must look like http://HOST:PORT/v1")
    return url if parts.path else url + "/v1"


class _Failed(Exception):
    """A request that failed for good: after the retries, or at once when retrying cannot help."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason = url, reason


ROUTINGS = ("sticky", "round-robin")


class OpenAIEngine:
    """Chat completions over HTTP, `max_concurrency` requests in flight, spread over `base_urls`.

    routing "sticky" (default): all turns of a trajectory (`GenerationRequest.session`) go to the
    server that took its first turn, which holds its conversation in its prefix cache; a new
    trajectory goes to the server with the fewest requests in flight; after a failure a turn
    moves to another server and the trajectory stays there. "round-robin": every request to the
    least-loaded server, in turn (no regard for where a conversation's prefix is cached).

    `vllm_params` sends vLLM's own sampling fields (top_k, min_p, repetition_penalty,
    skip_special_tokens, structured outputs); turn it off for servers that reject unknown fields,
    such as OpenAI's. `extra_body` is merged into every request last (e.g. chat_template_kwargs).
    `media_dir`: send images as files written there (see pr_eval.engines.media.SharedFolder)
    instead of inline. `protocol`: send its pixel bounds and video frame rate with every request
    and, with `pixel_check`, refuse a server that does not show images at those bounds
    (pr_eval.engines.served); None sends neither (a bare transport, as the judge uses)."""

    name = "openai"

    def __init__(self, base_urls: str | Sequence[str], model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 max_concurrency: int = 16, retries: int = DEFAULT_RETRIES, backoff: float = 1.0,
                 timeout: float = DEFAULT_TIMEOUT_S,
                 vllm_params: bool = True, extra_body: dict | None = None, check: bool = True,
                 routing: str = "sticky", media_dir: str | None = None, protocol: Protocol | None = None,
                 pixel_check: bool = True):
        try:
            import openai
        except ImportError as exc:
            raise EngineError("the openai package is not installed: pip install openai") from exc
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise EngineError("no base URL given: pass the server's address, e.g. http://127.0.0.1:8000/v1")
        if max_concurrency < 1 or retries < 0 or not timeout > 0:
            raise EngineError("max_concurrency must be at least 1, retries at least 0 and the timeout positive")
        if routing not in ROUTINGS:
            raise EngineError(f"unknown routing {routing!r}; choose from: {', '.join(ROUTINGS)}")
        self.routing = routing
        if media_dir is not None and not vllm_params:
            raise EngineError("media_dir needs a vLLM server (it reads file:// URLs with --allowed-local-media-path)")
        self._home: dict[str, str] = {}  # trajectory (session) -> the server that holds its prefix
        self.base_urls = [normalize_base_url(u) for u in urls]
        self.model = model
        self.api_key_env = api_key_env
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.vllm_params = vllm_params
        self.extra_body = dict(extra_body or {})
        self.images = SharedFolder(media_dir) if media_dir is not None else EncodedImages("bmp" if vllm_params else "png")
        api_key = os.environ.get(api_key_env) or "EMPTY"  # local servers started without --api-key
        # The library's own retries are off: ours log, back off, and move to another server.
        # `timeout` bounds each whole request (pr_eval.engines.deadline), not each read of it
        self._clients = {url: openai.OpenAI(base_url=url, api_key=api_key, max_retries=0, timeout=timeout,
                                            http_client=deadline.client(timeout)) for url in self.base_urls}
        self._in_flight = {url: 0 for url in self.base_urls}
        self._next = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="openai-engine")
        # The protocol's bounds and frame rate go with every request to a vLLM server (which takes
        # them when started with --trust-request-mm-kwargs); without the check nothing is sent and
        # the server's own settings decide what the model sees.
        checked = protocol is not None and pixel_check
        self.media_kwargs = served.request_kwargs(protocol) if checked and vllm_params else {}
        # How the protocol's pixels reach the model, and what each server's check found (run.json)
        self.media_route: dict = {
            "pixel_bounds": ("sent with every request (mm_processor_kwargs, media_io_kwargs)" if self.media_kwargs
                             else "the server's own settings"),
            **({"video_fps": protocol.video_fps} if self.media_kwargs else {}),
            "check": {} if checked else ("off (--no-pixel-check)" if protocol is not None else "off")}
        try:
            for url in self.base_urls:
                if check:
                    self._check_server(url)
                if checked:
                    self.media_route["check"][url] = self._check_pixels(url, protocol)
        except BaseException:
            self.close()
            raise

    # --- set-up ------------------------------------------------------------------------------
    def _check_server(self, url: str) -> None:
        """Fail now, with the fix, when the server is down, refuses the key or lacks the model."""
        import openai

        try:
            # a few quick tries: a wrong address should say so in seconds, not after the backoff
            # that lets a long run ride out a server restart
            served = self._call(lambda client: client.models.list(), url=url, retries=min(self.retries, 2))
        except _Failed as exc:
            raise EngineError(f"cannot reach {exc.url}: {exc.reason}; is the server running?") from None
        except openai.NotFoundError:
            log.warning("%s has no /models endpoint; the model name is checked on the first request", url)
            return
        names = [m.id for m in served.data]
        if names and self.model not in names:
            raise EngineError(f"model {self.model!r} is not served at {url}; it serves "
                              f"{', '.join(map(repr, names))}: pass one of them as the model name")

    def _check_pixels(self, url: str, protocol: Protocol) -> dict:
        """Refuse `url` (EngineError) unless it shows images and videos at the protocol's engine
        pixel bounds (pr_eval.engines.served); the prompt token counts it reported, when it does."""
        def send(body: dict):
            try:
                return self._call(lambda client: client.chat.completions.create(**body), url=url,
                                  retries=min(self.retries, 2))
            except Exception as exc:  # _Failed, or a 404 on a pinned call
                raise served.ProbeFailed(exc.reason if isinstance(exc, _Failed) else _describe(exc)) from None

        return served.check_pixels(url, send, protocol, model=self.model, transport=self.images,
                                   per_request=self.media_kwargs)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for client in self._clients.values():
            client.close()
        self.images.close()

    # --- requests ------------------------------------------------------------------------------
    def body(self, request: GenerationRequest, decoding: Decoding) -> dict:
        """The keyword arguments of `chat.completions.create` for one request."""
        extra: dict = {}
        if self.vllm_params:
            # The offline engine's SamplingParams defaults, sent so the server cannot fill them
            # from the checkpoint's generation_config.json.
            extra.update(top_k=decoding.top_k, min_p=0.0, repetition_penalty=1.0,
                         skip_special_tokens=decoding.skip_special_tokens, min_tokens=decoding.min_tokens,
                         # the stop token comes back in the text, so `read_reply` can tell which one
                         # ended the turn (the reply's stop_reason is only a token id for eos ids)
                         include_stop_str_in_output=True)
            if request.constraint:
                extra["structured_outputs"] = {"regex": request.constraint}
            extra.update(self.media_kwargs)
        extra.update(self.extra_body)
        body = dict(model=self.model, messages=to_openai_messages(request, self.images), temperature=decoding.temperature,
                    top_p=decoding.top_p, max_tokens=decoding.max_new_tokens, seed=request.seed_or(decoding),
                    presence_penalty=0.0, frequency_penalty=0.0, n=1, stream=False)
        if decoding.stop_tokens:
            body["stop"] = list(decoding.stop_tokens)
        if extra:
            body["extra_body"] = extra
        return body

    def submit(self, request: GenerationRequest, decoding: Decoding) -> Future:
        """Send one request on its own worker thread (at most `max_concurrency` at once; more
        wait for a free one); the server batches whatever is in flight."""
        self._check_params([request], decoding)
        return self._pool.submit(self._generate_one, request, decoding)

    def _check_params(self, requests: Sequence[GenerationRequest], decoding: Decoding) -> None:
        if not self.vllm_params and (decoding.top_k > 0 or any(r.constraint for r in requests)):
            raise EngineError("structured outputs and top_k need a vLLM server: build OpenAIEngine with "
                              "vllm_params=True")

    def generate(self, requests: Sequence[GenerationRequest], decoding: Decoding) -> list[GenerationResult]:
        if not requests:
            return []
        self._check_params(requests, decoding)
        futures = [self._pool.submit(self._generate_one, request, decoding) for request in requests]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        fatal = next((f.exception() for f in done if f.exception() is not None), None)
        if fatal is not None:  # a wrong key or model: every other request would fail the same way
            for future in futures:
                future.cancel()
            wait(futures)
            raise fatal
        return [f.result() for f in futures]

    def _generate_one(self, request: GenerationRequest, decoding: Decoding) -> GenerationResult:
        try:
            body = self.body(request, decoding)
        except EngineError:  # no request can be sent (the media folder is gone): stop the run
            raise
        except Exception as exc:  # this request's media or constraint; the batch goes on
            return GenerationResult(text="", error=f"{type(exc).__name__}: {exc}")
        try:
            response = self._call(lambda client: client.chat.completions.create(**body), session=request.session)
        except _Failed as exc:
            if isinstance(self.images, SharedFolder) and (
                    str(self.images.folder.parent) in exc.reason or "allowed-local-media-path" in exc.reason):
                # not allowed, not mounted, files deleted: every later sample would be lost alike
                raise EngineError(f"{exc.url} cannot read the images in {self.images.folder}: {exc.reason[:300]}; "
                                  "start the server with --allowed-local-media-path on that folder, where it sees "
                                  "it at the same path, and leave the folder alone while pr-eval runs; then run "
                                  "again with --resume") from None
            return GenerationResult(text="", error=str(exc))
        try:
            return read_reply(response, decoding.stop_tokens)
        except Exception as exc:  # noqa: BLE001 - a reply of any shape is this request's problem only
            return GenerationResult(text="", error=f"unreadable reply from the server: {type(exc).__name__}: {exc}")

    # --- transport: servers, retries, errors -------------------------------------------------
    def _acquire(self, avoid: str | None, session: str | None = None) -> str:
        """The server for one attempt: a sticky trajectory's own server; else the least-loaded
        one, round-robin among equals; after a failure, another one (which the trajectory keeps)."""
        with self._lock:
            home = self._home.get(session) if session is not None and self.routing == "sticky" else None
            if home is not None and home != avoid:
                self._in_flight[home] += 1
                return home
            n = len(self.base_urls)
            order = [self.base_urls[(self._next + k) % n] for k in range(n)]
            candidates = [u for u in order if u != avoid] or order
            url = min(candidates, key=lambda u: self._in_flight[u])
            self._in_flight[url] += 1
            self._next = (self.base_urls.index(url) + 1) % n
            if session is not None and self.routing == "sticky":
                self._home[session] = url
            return url

    def _release(self, url: str) -> None:
        with self._lock:
            self._in_flight[url] -= 1

    def _call(self, fn: Callable, url: str | None = None, retries: int | None = None, session: str | None = None):
        """`fn(client)` with retries on transient failures; `url` pins one server.

        Raises `_Failed` when the request cannot succeed, `EngineError` when no request can
        (wrong key, unknown model), and `openai.NotFoundError` from a pinned call (the caller
        decides what a 404 means there)."""
        import openai

        retries = self.retries if retries is None else retries
        last_url = None
        for attempt in range(retries + 1):
            target = url or self._acquire(avoid=last_url, session=session)
            try:
                return fn(self._clients[target])
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise EngineError(self._auth_message(target, exc)) from None
            except openai.NotFoundError as exc:
                if url is not None:
                    raise
                raise EngineError(f"{target} answered 404 for model {self.model!r} "
                                  f"({_server_message(exc)}): pass a model name the server serves "
                                  f"(GET {target}/models lists them), and a base URL ending in /v1") from None
            except Exception as exc:
                reason = _describe(exc)
                if not _transient(exc):
                    raise _Failed(target, reason) from None
                if attempt == retries:
                    raise _Failed(target, reason + (f" (after {attempt + 1} attempts)" if attempt else "")) from None
                delay = min(self.backoff * 2 ** attempt, MAX_BACKOFF_S) * (1 + 0.25 * random.random())
                delay = max(delay, _retry_after(exc))
                log.warning("request to %s failed (%s); retry %d of %d in %.1f s", target, reason,
                            attempt + 1, retries, delay)
            finally:
                if url is None:
                    self._release(target)
            last_url = target
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _auth_message(self, url: str, exc) -> str:
        where = (f"${self.api_key_env} is set but was refused" if os.environ.get(self.api_key_env)
                 else f"${self.api_key_env} is not set, so the key 'EMPTY' was sent")
        return (f"authentication failed at {url} (HTTP {exc.status_code}): {where}; set ${self.api_key_env} "
                f"to the server's API key")


def read_reply(response, stops: Sequence[str] = ()) -> GenerationResult:
    """A chat-completions reply as a turn, or as a lost turn (`error` set) when the reply holds no
    text: a null body, no choices, a choice without a message, `content: null`. A reply without text
    is the server's failure, never the model's wrong answer. Token counts the server left out or
    set to null count as 0."""
    def tokens(usage, name: str) -> int:
        value = getattr(usage, name, None)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    choices = getattr(response, "choices", None)
    if not choices or not isinstance(choices, list):
        return GenerationResult(text="", error=f"the server's reply has no choices: {str(response)[:300]}")
    choice = choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        what = "no message" if message is None else f"content {type(content).__name__ if content is not None else 'null'}"
        return GenerationResult(text="", error=f"the server's reply holds no text ({what}; finish_reason "
                                               f"{getattr(choice, 'finish_reason', None)!r})")
    usage = getattr(response, "usage", None)
    finish = getattr(choice, "finish_reason", None)
    text, stop = _split_stop(content, finish, getattr(choice, "stop_reason", None), stops)
    return GenerationResult(text=text, prompt_tokens=tokens(usage, "prompt_tokens"),
                            output_tokens=tokens(usage, "completion_tokens"),
                            finish_reason=finish if isinstance(finish, str) else None, stop=stop)


def _split_stop(content: str, finish, stop_reason, stops: Sequence[str]) -> tuple[str, str | None]:
    """The turn's text and what ended it, as the offline engine reports them. A vLLM server asked
    for `include_stop_str_in_output` ends the text with the stop token or string it met, which is
    cut off here; it also names a stop string in `stop_reason`. Another server's "stop" is taken
    to be the model's end-of-turn token. None when the token limit ended the turn."""
    if finish != "stop":
        return content, None
    for stop in sorted((s for s in stops if s), key=len, reverse=True):
        if content.endswith(stop):
            return content[: -len(stop)], stop
    return content, stop_reason if isinstance(stop_reason, str) else IM_END


def _transient(exc: Exception) -> bool:
    """Worth another try: the connection, a timeout, rate limiting, or the server's own trouble."""
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _retry_after(exc: Exception) -> float:
    """The server's Retry-After in seconds (capped), or 0."""
    response = getattr(exc, "response", None)
    try:
        return min(float(response.headers.get("retry-after", 0)), MAX_BACKOFF_S)
    except (AttributeError, TypeError, ValueError):
        return 0.0


def _describe(exc: Exception) -> str:
    """One line: "connection refused", "timed out", "HTTP 503: ..."."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {_server_message(exc)}"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
            if isinstance(cause, OSError) and cause.strerror:
                return cause.strerror.lower()
        return str(cause) or type(cause).__name__
    return f"{type(exc).__name__}: {exc}"


def _server_message(exc) -> str:
    """The server's own words from an error response (vLLM: {"error": {"message": ...}})."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(getattr(exc, "message", exc))
