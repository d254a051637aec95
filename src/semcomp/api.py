"""Calling OpenAI-compatible APIs at research scale: concurrency, retries, secrets.

One place for what the API captioner and the image-API reconstructor share:

- the key comes from an environment variable *named* in the study file and is
  scrubbed from every message that could reach the store, logs or reports;
- requests run concurrently (asyncio, bounded by a semaphore) through the
  official ``openai`` client with its own retries off;
- 429, 5xx, timeouts, dropped connections and malformed bodies are retried with
  exponential backoff and jitter, waiting what ``Retry-After`` asks up to
  ``max_backoff`` (a 429 pauses every worker, not just the one that got it); the
  waits are recorded, and an item still failing after ``max_attempts`` is a
  failure the next run retries;
- each request has a total deadline (``timeout``), not only a limit per read, and
  an answer's body is read up to ``max_response_bytes`` and no further;
- every string that comes back (captions, metadata, error messages) passes through
  :func:`redact` before it can be stored;
- an invalid key (401) stops the whole batch at once with one clear message,
  instead of failing every item.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import Field, field_validator

from semcomp.errors import ConfigError, SemcompError
from semcomp.params import PluginParams

T = TypeVar("T")

_SECRET_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|Bearer\s+[^\s\"']+)")


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with every secret, and anything shaped like an API key, replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return _SECRET_PATTERN.sub("[REDACTED]", text)


#: 4xx statuses that mean "try again later" (timeout, conflict, too early)
TRANSIENT_STATUS = frozenset({408, 409, 425})


class ApiKeyRejected(SemcompError):
    """The endpoint refused the key (401/403): nothing else in the batch can succeed."""


class ApiItemFailure(Exception):
    """One request failed for good (after retries, or a refusal); the message is redacted."""

    def __init__(self, reason: str, *, retryable: bool, detail: dict | None = None):
        super().__init__(reason)
        self.retryable = retryable
        self.detail = detail or {}


class MalformedResponse(Exception):
    """The endpoint answered 200 with something that is not the expected response."""


class ResponseTooLarge(Exception):
    """An answer's body went past ``max_response_bytes`` (the rest was not read)."""


class DeadlineExceeded(Exception):
    """A request had no complete answer within its total deadline (``timeout``)."""


def scrub(value: Any, secrets: Sequence[str] = ()) -> Any:
    """``value`` with :func:`redact` applied to every string in it (dicts, lists,
    tuples and dataclasses such as captions are walked; other values are kept)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(v, secrets) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: scrub(getattr(value, f.name), secrets)
            for f in dataclasses.fields(value)
            if f.init
        }
        return dataclasses.replace(value, **changes)
    return value


class ApiParams(PluginParams):
    """Connection settings every API-backed plugin shares."""

    #: an OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, ...); None = OpenAI's
    base_url: str | None = None
    #: the NAME of the environment variable holding the key (the key itself never goes in a file)
    api_key_env: str = "OPENAI_API_KEY"
    #: requests in flight at once
    concurrency: int = Field(default=8, ge=1, le=256)
    #: seconds before one request is abandoned (and retried): a total deadline, however
    #: slowly the answer trickles in
    timeout: float = Field(default=120.0, gt=0)
    #: attempts per item, the first included
    max_attempts: int = Field(default=6, ge=1, le=20)
    #: first backoff in seconds; doubles per attempt, with jitter, up to ``max_backoff``
    backoff: float = Field(default=1.0, ge=0)
    #: the longest wait between attempts, a server's ``Retry-After`` included
    max_backoff: float = Field(default=60.0, ge=0)
    #: the largest answer body read; a longer one is a failure of that item
    max_response_bytes: int = Field(default=1 << 20, ge=1024)

    operational: ClassVar[frozenset[str]] = frozenset(
        {
            "api_key_env",
            "concurrency",
            "timeout",
            "max_attempts",
            "backoff",
            "max_backoff",
            "max_response_bytes",
        }
    )

    @property
    def endpoint(self) -> str:
        """The base URL requests go to (OpenAI's when none is given)."""
        return self.base_url or "https://api.openai.com/v1"

    @property
    def chunk_items(self) -> int:
        """Items per batch written to the store: several rounds of concurrent requests."""
        return self.concurrency * 4

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or _SECRET_PATTERN.search(name):
            raise ValueError(
                "api_key_env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                "never the key itself"
            )
        return name


def api_key(params: ApiParams) -> str:
    key = os.environ.get(params.api_key_env, "")
    if not key:
        raise ConfigError(
            f"environment variable {params.api_key_env} is not set; export the API key there "
            "(the study file names the variable, never the key)"
        )
    return key


def retry_after_seconds(exc: BaseException) -> float | None:
    """The delay a response asks for: ``retry-after-ms``, ``retry-after`` seconds or HTTP date."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def make_client(params: ApiParams, key: str) -> Any:
    """An ``openai.AsyncOpenAI`` with retries off (ours are in :class:`ApiRunner`).

    The connection pool is at least the concurrency, and waiting for a pooled
    connection is not bounded by the read timeout. Answers are read through
    :func:`bounded_answers`: at most ``max_response_bytes`` of any body.
    """
    import openai

    try:  # openai 3 sends through httpx2; earlier releases through httpx
        import httpx2 as httpx
    except ImportError:  # pragma: no cover
        import httpx

    connections = max(16, params.concurrency)
    http_client = openai.DefaultAsyncHttpxClient(
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        event_hooks=bounded_answers(httpx, params.max_response_bytes),
    )
    return openai.AsyncOpenAI(
        base_url=params.base_url,
        api_key=key,
        max_retries=0,
        http_client=http_client,
        timeout=httpx.Timeout(params.timeout, connect=min(10.0, params.timeout), pool=None),
    )


def bounded_answers(httpx: Any, max_bytes: int) -> dict[str, list[Any]]:
    """httpx event hooks that ask for uncompressed answers (so the bytes counted are the
    bytes kept) and stop reading one past ``max_bytes``, raising :class:`ResponseTooLarge`
    (hooks, not a transport: they hold whichever transport a proxy setting picks)."""

    def too_large(received: str) -> ResponseTooLarge:
        return ResponseTooLarge(
            f"the answer is larger than max_response_bytes = {max_bytes:,} bytes "
            f"({received} bytes); not read further"
        )

    class BoundedBody(httpx.AsyncByteStream):
        def __init__(self, stream: Any):
            self.stream = stream

        async def __aiter__(self) -> Any:
            received = 0
            async for chunk in self.stream:
                received += len(chunk)
                if received > max_bytes:
                    raise too_large(f"over {received:,}")
                yield chunk

        async def aclose(self) -> None:
            await self.stream.aclose()

    async def uncompressed(request: Any) -> None:
        request.headers["Accept-Encoding"] = "identity"

    async def bounded(response: Any) -> None:
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes:
            await response.aclose()
            raise too_large(f"{int(length):,}")
        response.stream = BoundedBody(response.stream)

    return {"request": [uncompressed], "response": [bounded]}


class ApiRunner:
    """Runs many requests concurrently with shared backoff and an abort on a rejected key.

    Reads the key on construction, so a missing variable fails before any work.
    """

    def __init__(self, params: ApiParams):
        self.params = params
        self._key = api_key(params)
        self._secrets = [self._key]
        self._cooldown_until = 0.0
        self._rejected: str | None = None

    def _retryable(self) -> tuple[type[BaseException], ...]:
        import openai

        return (
            openai.RateLimitError,
            openai.InternalServerError,
            openai.APIConnectionError,  # timeouts are a subclass
            openai.APIResponseValidationError,
            json.JSONDecodeError,
            MalformedResponse,
            DeadlineExceeded,
        )

    def _delay(self, attempt: int, exc: BaseException) -> tuple[float, float | None]:
        """(seconds to wait before the next attempt, what ``Retry-After`` asked, if it did):
        the exponential backoff with jitter, or what the server asked, never more than
        ``max_backoff``."""
        cap = self.params.max_backoff
        exponential = min(cap, self.params.backoff * 2 ** (attempt - 1))
        jittered = random.uniform(exponential / 2, exponential)
        asked = retry_after_seconds(exc)
        return (jittered if asked is None else min(cap, max(asked, jittered))), asked

    def _scrubbed(self, result: Any) -> Any:
        """The result of one item with the key (and key-shaped strings) taken out."""
        if isinstance(result, ApiItemFailure):
            return ApiItemFailure(
                self.redact(str(result)),
                retryable=result.retryable,
                detail=scrub(result.detail, self._secrets),
            )
        return scrub(result, self._secrets)

    async def call(
        self,
        semaphore: asyncio.Semaphore,
        request: Callable[[], Awaitable[Any]],
        check: Callable[[Any], T],
    ) -> T | ApiItemFailure:
        """One item: ``check(await request())`` with retries; failures come back, not raised.

        Every string in what comes back is redacted. A success that needed retries
        records them in its ``meta`` (``api_attempts``, ``api_waited_s``), a failure in
        its ``detail`` (and ``retry_after_s``: the longest wait a server asked for).
        """
        waits = {"waited": 0.0, "asked": None}
        attempts, result = await self._attempts(semaphore, request, check, waits)
        record: dict[str, Any] = {}
        if attempts > 1 or waits["waited"] > 0:
            record = {"api_attempts": attempts, "api_waited_s": round(waits["waited"], 3)}
        if waits["asked"] is not None:
            record["retry_after_s"] = waits["asked"]
        if isinstance(result, ApiItemFailure):
            result.detail = result.detail | record
        elif record and isinstance(getattr(result, "meta", None), dict):
            result = dataclasses.replace(result, meta=result.meta | record)
        return self._scrubbed(result)

    async def _attempts(
        self,
        semaphore: asyncio.Semaphore,
        request: Callable[[], Awaitable[Any]],
        check: Callable[[Any], T],
        waits: dict[str, Any],
    ) -> tuple[int, T | ApiItemFailure]:
        import openai

        retryable = self._retryable()
        last = "no attempt made"

        async def pause(seconds: float) -> None:
            if seconds > 0:
                waits["waited"] += seconds
                await asyncio.sleep(seconds)

        async def back_off(attempt: int, exc: BaseException) -> None:
            delay, asked = self._delay(attempt, exc)
            if asked is not None:
                waits["asked"] = max(asked, waits["asked"] or 0.0)
            if isinstance(exc, openai.RateLimitError):
                self._cooldown_until = max(self._cooldown_until, time.monotonic() + delay)
            await pause(delay)

        attempt = 0
        for attempt in range(1, self.params.max_attempts + 1):
            if self._rejected is not None:
                return attempt, ApiItemFailure(self._rejected, retryable=True)
            await pause(self._cooldown_until - time.monotonic())
            try:
                async with semaphore:
                    if self._rejected is not None:
                        return attempt, ApiItemFailure(self._rejected, retryable=True)
                    # a 429 elsewhere may have started a pause while this task queued
                    await pause(self._cooldown_until - time.monotonic())
                    try:
                        async with asyncio.timeout(self.params.timeout):
                            response = await request()
                    except TimeoutError:
                        raise DeadlineExceeded(
                            f"no complete answer within timeout = {self.params.timeout:g} s"
                        ) from None
                return attempt, check(response)
            except ApiItemFailure as failure:
                return attempt, failure
            except ResponseTooLarge as exc:
                # settled: asking again would pay for (and read) the same flood
                return attempt, ApiItemFailure(str(exc), retryable=False)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                self._rejected = redact(f"the API rejected the key: {exc}", self._secrets)
                return attempt, ApiItemFailure(self._rejected, retryable=True)
            except retryable as exc:
                last = redact(f"{type(exc).__name__}: {exc}", self._secrets)
                if attempt == self.params.max_attempts:
                    break
                await back_off(attempt, exc)
            except openai.APIStatusError as exc:
                reason = redact(f"{type(exc).__name__}: {exc}", self._secrets)
                if exc.status_code in TRANSIENT_STATUS and attempt < self.params.max_attempts:
                    last = reason
                    await back_off(attempt, exc)
                    continue
                # other 4xx: the request itself is wrong (a refusal, a bad parameter)
                return attempt, ApiItemFailure(
                    reason, retryable=exc.status_code in TRANSIENT_STATUS
                )
        waited = f"waited {waits['waited']:.1f} s in all"
        if waits["asked"] is not None and waits["asked"] > self.params.max_backoff:
            waited += (
                f"; the server asked for up to {waits['asked']:g} s, "
                f"capped at max_backoff = {self.params.max_backoff:g} s"
            )
        return attempt, ApiItemFailure(
            f"gave up after {self.params.max_attempts} attempts ({waited}): {last}",
            retryable=True,
        )

    def run_all(
        self,
        make_requests: Callable[[Any], Sequence[Callable[[], Awaitable[Any]]]],
        check: Callable[[Any], T],
    ) -> list[T | ApiItemFailure]:
        """Run ``make_requests(client)`` (at most ``concurrency`` at once), each checked.

        Raises :class:`ApiKeyRejected` if the endpoint refused the key.
        """

        async def main() -> list[T | ApiItemFailure]:
            client = make_client(self.params, self._key)
            semaphore = asyncio.Semaphore(self.params.concurrency)
            try:
                return await asyncio.gather(
                    *(self.call(semaphore, request, check) for request in make_requests(client))
                )
            finally:
                await client.close()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            results = asyncio.run(main())
        else:  # called from inside an event loop (a notebook): run ours in a thread
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=1) as pool:
                results = pool.submit(asyncio.run, main()).result()
        if self._rejected is not None:
            raise ApiKeyRejected(
                f"{self._rejected} (variable {self.params.api_key_env}); stopping before "
                "the rest of the batch"
            )
        return results

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def leaks_secret(self, data: bytes) -> bool:
        """Whether ``data`` (an answer's bytes, an image) holds the key or a key-shaped string."""
        text = data.decode("latin-1")
        return redact(text, self._secrets) != text
