"""What the remote backends (``openai:``, ``litellm:``) share: fault settings, retries, endpoint caps,
and `RemoteClient`, the base of their clients (spec parsing, settings, request refusals).

One retry policy for every remote call: the per-request timeout, then retries with exponential
backoff and jitter on rate limits (429), server errors (5xx), timeouts and dropped connections
(the SDKs' own retries are turned off). A concurrency cap holds per backend endpoint: it lives in
a registry keyed by the endpoint, so the many clients an episode run makes (one per role per
episode) share it. The registry is per event loop, since asyncio locks and HTTP connection pools
belong to the loop that made them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import weakref
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

from ...errors import BackendError
from .._spec import ModelSpec
from ._base import SparringClient
from ._component import ClientConfig

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
"""HTTP statuses worth another try: timeout, conflict, rate limit, server errors."""
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS)", re.IGNORECASE)
_jitter = random.Random()
_registries: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, dict]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class FaultPolicy:
    """How a remote backend copes with faults; every field can be set in the spec's query.

    Args:
        timeout (`float`): seconds one request may take before it is abandoned (and retried).
        retries (`int`): further attempts after a failed one (0: fail at once).
        backoff (`float`): seconds before the first retry; doubled for each next one, with jitter.
        max_backoff (`float`, defaults to 30): the longest wait between two attempts.
        max_concurrency (`int`): requests in flight at once per endpoint (server URL or provider).

    Example:
        >>> FaultPolicy.from_options({"timeout": 5, "top_k": 20}, FaultPolicy())
        (FaultPolicy(timeout=5.0, retries=4, backoff=1.0, max_backoff=30.0, max_concurrency=64), {'top_k': 20})
    """

    timeout: float = 300.0
    retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    max_concurrency: int = 64

    @classmethod
    def from_options(cls, options: dict[str, Any], defaults: "FaultPolicy") -> tuple["FaultPolicy", dict[str, Any]]:
        """Take the fault settings out of a spec's options; return the policy and the other options.

        Raises:
            `BackendError`: a setting has a wrong type or is out of range.
        """
        rest, chosen = dict(options), {}
        for item in fields(cls):
            if item.name not in rest:
                continue
            value = rest.pop(item.name)
            kind = int if item.type == "int" else float
            low = 1 if item.name == "max_concurrency" else 0
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (kind is int and value != int(value)):
                raise BackendError(f"bad setting {item.name}={value!r} in a model spec: expected "
                                   f"{'an integer' if kind is int else 'a number'} >= {low}, "
                                   f"e.g. ?{item.name}={getattr(defaults, item.name)!r}")
            chosen[item.name] = kind(value)
        if chosen.get("timeout") == 0:
            raise BackendError("bad setting timeout=0 in a model spec: expected seconds > 0, e.g. ?timeout=60")
        return replace(defaults, **chosen), rest

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): exponential, with jitter, at most ``max_backoff``."""
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        wait = _jitter.uniform(ceiling / 2, ceiling)
        return max(wait, min(retry_after, self.max_backoff)) if retry_after is not None else wait


def loop_registry(name: str) -> dict:
    """A dict shared by everything running on the current event loop, under ``name``."""
    loop = asyncio.get_running_loop()
    return _registries.setdefault(loop, {}).setdefault(name, {})


@dataclass(eq=False)
class Endpoint:
    """One backend endpoint (a server URL, or an API provider) and its shared concurrency cap.

    Attributes:
        key (`str`): the endpoint, e.g. ``http://127.0.0.1:8000/v1`` or ``litellm:anthropic``.
        gate (`asyncio.Semaphore`): at most ``max_concurrency`` requests in flight.
        assigned (`int`): requests waiting for or holding the gate now.
        requests (`int`): requests sent so far (each attempt counts).
    """

    key: str
    gate: asyncio.Semaphore
    assigned: int = 0
    requests: int = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the endpoint's request slots for the duration of one request."""
        self.assigned += 1
        try:
            async with self.gate:
                self.requests += 1
                yield
        finally:
            self.assigned -= 1


def endpoint(key: str, max_concurrency: int) -> Endpoint:
    """The shared `Endpoint` for ``key`` on this event loop; the first spec to use it sets its cap."""
    endpoints = loop_registry("endpoints")
    if key not in endpoints:
        endpoints[key] = Endpoint(key, asyncio.Semaphore(max_concurrency))
    return endpoints[key]


def least_busy(endpoints: list[Endpoint]) -> Endpoint:
    """The endpoint with the fewest requests assigned now (then the fewest sent): spreads the load."""
    return min(endpoints, key=lambda e: (e.assigned, e.requests))


def retryable(error: BaseException) -> bool:
    """Whether another attempt may succeed: rate limits, server errors, timeouts, dropped connections,
    and a reply body cut short or not JSON (a proxy or server that broke off mid-reply)."""
    import httpx
    import openai

    if isinstance(error, openai.APIStatusError):
        return error.status_code in RETRY_STATUS
    return isinstance(error, (openai.APIConnectionError, httpx.TransportError, asyncio.TimeoutError, ConnectionError,
                              json.JSONDecodeError, openai.APIResponseValidationError))


def _retry_after(error: BaseException) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def describe(error: BaseException) -> str:
    """A one-line account of a backend error, with secrets from the environment blotted out."""
    status = getattr(error, "status_code", None)
    text = " ".join(str(error).split()) or type(error).__name__
    return scrub(f"{type(error).__name__}{f' (HTTP {status})' if status else ''}: {text}")


def scrub(text: str) -> str:
    """``text`` with the value of every secret-looking environment variable (``*_KEY``, ``*TOKEN*``...) replaced."""
    for name, value in os.environ.items():
        if len(value) >= 8 and _SECRET_NAME.search(name) and value in text:
            text = text.replace(value, f"[${name}]")
    return text


async def with_retries(attempt: Callable[[], Awaitable[T]], policy: FaultPolicy, where: str,
                       hint: Callable[[BaseException], str] = lambda _: "") -> T:
    """Run ``attempt()`` under ``policy``: retry what `retryable` accepts, turn failures into `BackendError`.

    Args:
        attempt: makes one request (choosing its endpoint each time, so a retry may go elsewhere) and
            bounds it with `timed`.
        policy (`FaultPolicy`): retries and backoff.
        where (`str`): the backend, for error messages (never a secret).
        hint: a fix to suggest for a final error, e.g. which environment variable to set.

    Raises:
        `BackendError`: a non-retryable error, or the last error once the retries are spent.
    """
    failed = 0
    while True:
        try:
            return await attempt()
        except Exception as error:  # classified below; anything else is re-raised as it is
            if not retryable(error):
                with api_errors(where, hint):
                    raise
            if failed == policy.retries:
                raise BackendError(f"{where}: gave up after {failed + 1} attempt(s): {describe(error)}"
                                   f"{hint(error)}") from None
            await asyncio.sleep(policy.delay(failed, _retry_after(error)))
            failed += 1


@contextmanager
def api_errors(where: str, hint: Callable[[BaseException], str] = lambda _: "") -> Iterator[None]:
    """Turn an OpenAI SDK error (LiteLLM raises them too) into a `BackendError`; let anything else through."""
    import openai

    try:
        yield
    except openai.APIError as error:  # `from None`: the original may quote a key
        raise BackendError(f"{where}: {describe(error)}{hint(error)}") from None


async def timed(request: Awaitable[T], policy: FaultPolicy) -> T:
    """Await one request for at most ``policy.timeout`` seconds (time waiting for a slot does not count)."""
    try:
        return await asyncio.wait_for(request, policy.timeout)
    except asyncio.TimeoutError:
        raise asyncio.TimeoutError(f"no reply within {policy.timeout:g} s (raise it with ?timeout=SECONDS)") from None


DEFAULT_SAMPLING = {"temperature": 0.7, "max_tokens": 256}
"""What a remote role gets when neither the protocol nor the spec says: the embedded engine's defaults."""


@dataclass
class RemoteSettings:
    """A remote client's settings: its fault policy, what to ask the server for, and sampling defaults.

    Sampling precedence, lowest first: the spec's query, the client's keyword arguments (a
    protocol role's ``sampling``), its ``extra`` mapping, then one call's ``extra_create_args``.
    """

    policy: FaultPolicy
    logprobs: bool
    token_ids: bool
    sampling: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, options: dict[str, Any], defaults: FaultPolicy, flags_default: bool,
              sampling: dict[str, Any], extra: dict[str, Any] | None) -> "RemoteSettings":
        """Settings from a spec's options, the scheme's fault defaults and the client's sampling arguments.

        Raises:
            `BackendError`: a fault setting or a ``logprobs``/``token_ids`` flag has a bad value.
        """
        policy, rest = FaultPolicy.from_options(options, defaults)
        flags = {}
        for name in ("logprobs", "token_ids"):
            value = rest.pop(name, flags_default)
            if not isinstance(value, bool):
                raise BackendError(f"bad setting {name}={value!r} in a model spec: expected true or false")
            flags[name] = value
        chosen = {**DEFAULT_SAMPLING, **rest, **{k: v for k, v in sampling.items() if v is not None}, **(extra or {})}
        return cls(policy, flags["logprobs"], flags["token_ids"], chosen)


class RemoteClient(SparringClient):
    """A client of a remote backend: built from a spec of its scheme, with `RemoteSettings`.

    A subclass sets ``_scheme``, ``_takes`` (the spec form, for errors), ``_fault_defaults`` and
    ``_flags_default`` (whether ``logprobs``/``token_ids`` are asked for unless the spec says), and
    keeps what else it needs of the spec in `_bind`.
    """

    _no_tools = "{spec}: sparring's remote clients take no tools; give the agent none"
    _no_json = "{spec}: sparring's remote clients do not ask for JSON or structured output"
    _scheme: str
    _takes: str
    _fault_defaults: FaultPolicy
    _flags_default: bool

    def __init__(self, spec: str | ModelSpec, *, temperature: float | None = None, top_p: float | None = None,
                 max_tokens: int | None = None, stop: list[str] | None = None, seed: int | None = None,
                 extra: dict[str, Any] | None = None):
        parsed = ModelSpec.parse(spec) if isinstance(spec, str) else spec
        if parsed.scheme != self._scheme:
            raise BackendError(f"{type(self).__name__} takes {self._takes} specs, not {str(parsed)!r}")
        sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "stop": stop, "seed": seed}
        self._start(ClientConfig(spec=str(parsed), **sampling, extra=extra))
        self.model = parsed.model
        self.settings = RemoteSettings.build(parsed.options, self._fault_defaults, self._flags_default, sampling, extra)
        self._bind(parsed)

    def _bind(self, parsed: ModelSpec) -> None:
        """Keep what the client needs of its spec beyond ``model`` and ``settings``."""

    def _gate(self, key: str) -> Endpoint:
        """The shared `Endpoint` of ``key``, capped at this spec's ``max_concurrency``."""
        return endpoint(key, self.settings.policy.max_concurrency)

    def _hint(self, error: BaseException) -> str:
        """A fix to suggest with a final error, e.g. which environment variable to set."""
        return ""
