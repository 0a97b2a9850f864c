"""HTTP client for Lucca's v2 APIs: auth, timeouts, retries, pacing and cursor pagination.

No Airflow import here: the client is used and tested on its own, and the hook only maps an
Airflow connection to a :class:`ClientConfig`.
"""

from __future__ import annotations

import json
import logging
import random
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import urllib3

from airflow_provider_lucca import __version__
from airflow_provider_lucca.client import metrics as events
from airflow_provider_lucca.client.config import ClientConfig
from airflow_provider_lucca.client.errors import (
    LuccaAPIError,
    LuccaAuthError,
    LuccaNotFoundError,
    LuccaNotJSONPageError,
    LuccaRateLimitError,
    LuccaRedirectError,
    LuccaRequestError,
    LuccaResponseError,
    LuccaServerError,
    LuccaTLSError,
    LuccaTooSlowError,
)
from airflow_provider_lucca.client.metrics import NO_METRICS, Metrics
from airflow_provider_lucca.client.pacing import Pacer, RequestPacer
from airflow_provider_lucca.client.paging import JsonObject, Page, PagingGuard, parse_page
from airflow_provider_lucca.client.query import QueryParams, realized_trainings_params
from airflow_provider_lucca.client.retry import (
    Failure,
    GiveUp,
    Retry,
    Transport,
    parse_retry_after,
)

REALIZED_TRAININGS_PATH = "/talent-training/api/v2/realized-trainings"
BODY_EXCERPT_CHARS = 200


class Logger(Protocol):
    """The part of a logger the client uses: stdlib and Airflow's structlog loggers both fit."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


@dataclass
class ClientStats:
    """What the client did, for task summaries and benchmarks."""

    requests: int = 0
    retries: int = 0
    pacing_wait_seconds: float = 0.0
    retry_wait_seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)


class LuccaClient:
    """A keep-alive session bound to one Lucca account.

    :param pacer: where request slots come from: a budget shared with other processes
        (:class:`~airflow_provider_lucca.client.budget.SharedBudget`), else this process's own
        :class:`~airflow_provider_lucca.client.pacing.RequestPacer` at the config's rate.
    :param sleep: injectable so tests assert waits without waiting.
    :param metrics: where requests, retries, 429s and waits are reported as they happen
        (:mod:`~airflow_provider_lucca.client.metrics`); nothing by default.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        logger: Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        pacer: Pacer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics: Metrics = metrics or NO_METRICS
        self.log: Logger = logger or logging.getLogger(__name__)
        self.stats = ClientStats()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._pacer: Pacer = pacer or RequestPacer(
            config.requests_per_minute, clock=clock, sleep=sleep
        )
        self.session = requests.Session()
        # .netrc from the environment must never replace the Authorization header, so the session
        # trusts nothing from the environment but its HTTPS proxy settings (HTTPS_PROXY,
        # NO_PROXY): an https request is tunnelled through a proxy, the key stays encrypted end to
        # end. A plain-http sandbox is never proxied.
        self.session.trust_env = False
        if config.base_url.startswith("https://"):
            self.session.proxies = requests.utils.get_environ_proxies(config.base_url)
        self.session.headers.update(
            {
                "Accept": "application/json",
                "User-Agent": f"airflow-provider-lucca/{__version__} "
                f"python-requests/{requests.__version__}",
            }
        )

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> LuccaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- single requests -------------------------------------------------------------------------

    def get_json(
        self, path: str, params: QueryParams, *, give_up_on_timeouts: int | None = None
    ) -> JsonObject:
        """GET ``path`` with retries; return the decoded JSON object of a 2xx answer.

        Each failed attempt becomes a :class:`~airflow_provider_lucca.client.retry.Failure`, and
        the policy's :meth:`~airflow_provider_lucca.client.retry.RetryPolicy.decide` says whether
        to wait and retry or what to raise; this loop does the sending, logging and sleeping.

        :param give_up_on_timeouts: raise :class:`LuccaTooSlowError` once this many attempts
            timed out (408 or a read timeout), or when the retries run out on a timeout, for a
            caller that can send a narrower request instead; None retries them like any
            transient failure.
        """
        if not path.startswith("/") or "://" in path:
            raise ValueError(f"path must be a path on the account host, got {path!r}")
        policy = self.config.retry
        metrics = self.metrics
        started = self._clock()
        attempt = timeouts = 0
        while True:
            attempt += 1
            waited = self._pacer.wait()
            if waited > 0:
                self.stats.pacing_wait_seconds += waited
                metrics.timing(events.PACING_WAIT, waited)
            self.stats.requests += 1
            metrics.incr(events.REQUESTS)
            cause: BaseException
            try:
                response = self._send(path, params)
            except (
                requests.ConnectionError,  # SSLError included
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,  # connection dropped mid-body
            ) as exc:
                failure = self._no_answer(path, exc)
                cause = exc
                metrics.incr(events.TRANSPORT_ERRORS)
            else:
                self.stats.statuses[response.status_code] = (
                    self.stats.statuses.get(response.status_code, 0) + 1
                )
                if 200 <= response.status_code < 300:
                    return self._decode(response, path)
                error = _classify(response, path, secret=self.config.api_key)
                response.close()
                failure = Failure.answer(error)
                cause = error
                metrics.incr(_answer_event(response.status_code))

            decision = policy.decide(
                failure, attempt=attempt, elapsed=self._clock() - started, rng=self._rng
            )
            if failure.status == 408 or failure.transport is Transport.READ_TIMEOUT:
                timeouts += 1
                if give_up_on_timeouts is not None and (
                    timeouts >= give_up_on_timeouts or isinstance(decision, GiveUp)
                ):
                    raise LuccaTooSlowError(
                        f"GET {path}: timed out {timeouts} times ({failure.reason} last): the "
                        "request is too heavy for Lucca's 5 s limit; a narrower one may pass.",
                        status=failure.status,
                        path=path,
                    ) from cause
            if failure.status == 429:
                # Everyone sharing the budget pauses, not only this process: also when this
                # process gives up (its last attempt, or a Retry-After beyond its cap).
                self._pacer.hold(
                    decision.wait
                    if isinstance(decision, Retry)
                    else min(
                        failure.retry_after or policy.rate_limit_min_wait, policy.retry_after_cap
                    )
                )
            if isinstance(decision, GiveUp):
                metrics.incr(events.GAVE_UP)
                if decision.error is cause:  # an answer not worth retrying: raised as classified
                    raise decision.error
                raise decision.error from cause
            self.log.warning(
                "Lucca GET %s: %s on attempt %d/%d, retrying in %.1f s%s",
                path,
                decision.reason,
                attempt,
                policy.max_attempts,
                decision.wait,
                " (Retry-After)" if decision.retry_after else "",
            )
            self.stats.retries += 1
            self.stats.retry_wait_seconds += decision.wait
            metrics.incr(events.RETRIES)
            metrics.timing(events.RETRY_WAIT, decision.wait)
            if decision.wait > 0:
                self._sleep(decision.wait)

    def _no_answer(self, path: str, exc: BaseException) -> Failure:
        """A transport error as a Failure; a TLS failure carries the error raised for it."""
        kind = _transport_kind(exc)
        error = None
        if kind is Transport.TLS:
            error = LuccaTLSError(
                f"GET {path}: TLS verification of {self.config.base_url} failed ({exc}). "
                "Lucca's certificates are publicly trusted: check the account URL. "
                "Not retried, and verification is never switched off.",
                path=path,
            )
        return Failure.no_answer(path, kind, type(exc).__name__, str(exc), error=error)

    def _send(self, path: str, params: QueryParams) -> requests.Response:
        timeout = (min(10.0, self.config.timeout), self.config.timeout)
        response = self.session.get(
            self.config.base_url + path,
            params=params,
            headers={"Authorization": f"lucca application={self.config.api_key}"},
            timeout=timeout,
            allow_redirects=False,
            stream=True,
        )
        # Read the whole body inside the retry loop, so a connection dropped mid-body is retried.
        response._content = self._read_body(response, path)
        return response

    def _read_body(self, response: requests.Response, path: str) -> bytes:
        limit = self.config.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise LuccaResponseError(
                f"GET {path}: the answer announces {int(declared)} bytes, more than the "
                f"{limit} accepted for one page; refusing to read it."
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in self._body_chunks(response):
            size += len(chunk)
            if size > limit:
                response.close()
                raise LuccaResponseError(
                    f"GET {path}: the answer is larger than the {limit} bytes accepted for one "
                    "page; refusing to read it."
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _body_chunks(self, response: requests.Response) -> Iterator[bytes]:
        """The body as it arrives, within ``timeout`` seconds in all.

        The read timeout bounds each socket read, not the answer: a server trickling a byte just
        under it would hold one attempt for hours. ``read1`` returns whatever has arrived, so the
        deadline is checked between reads; a late body is a read timeout, retried as such.
        """
        deadline = self._clock() + self.config.timeout
        raw = response.raw
        while True:
            try:
                chunk: bytes = raw.read1(256 * 1024, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError as exc:
                raise requests.exceptions.ReadTimeout(str(exc)) from exc
            except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as exc:
                raise requests.exceptions.ChunkedEncodingError(str(exc)) from exc
            if not chunk:
                return
            yield chunk
            if self._clock() > deadline:
                response.close()
                raise requests.exceptions.ReadTimeout(
                    f"the body did not arrive within {self.config.timeout:g} s"
                )

    def _decode(self, response: requests.Response, path: str) -> JsonObject:
        # A compact listing is decoded item by item, each item keeping its text as sent (the
        # spooler writes it as is); any other body the ordinary way, with its ordinary errors.
        from airflow_provider_lucca.client.paging import decode_listing

        decoder = json.JSONDecoder(
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            # An item whose text names a member twice is not kept as text: a reader of the text
            # could take the first value where the extraction counted and dated the last.
            object_pairs_hook=_members_once,
        )
        listing = decode_listing(response.content, decoder)
        if listing is not None:
            _refuse_unpaired_surrogates(listing, response.content, path)
            return listing
        try:
            body = json.loads(
                response.content, parse_constant=_reject_constant, parse_float=_finite_float
            )
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
            content_type = response.headers.get("Content-Type", "").lower()
            is_page = "html" in content_type or response.content.lstrip()[:1] == b"<"
            raise (LuccaNotJSONPageError if is_page else LuccaResponseError)(
                f"GET {path}: HTTP {response.status_code} but the body is not JSON "
                f"(Content-Type {response.headers.get('Content-Type', 'missing')!r}): "
                f"{_excerpt(response, self.config.api_key)!r}"
            ) from exc
        if not isinstance(body, dict):
            raise LuccaResponseError(
                f"GET {path}: expected a JSON object, got {type(body).__name__}: "
                f"{_excerpt(response, self.config.api_key)!r}"
            )
        _refuse_unpaired_surrogates(body, response.content, path)
        return body

    # -- pagination --------------------------------------------------------------------------------

    def paginate(
        self, path: str, params: QueryParams, *, give_up_on_timeouts: int | None = None
    ) -> Iterator[Page]:
        """Yield the pages of a v2 listing as they arrive, following ``next`` cursors.

        Asks for ``next`` and ``count`` in the same request as the items (no separate count call)
        and stops on a null ``next`` (no trailing empty page). A cursor is opaque: it is sent back
        as ``page=<cursor>`` on the same host and path, never used as a URL. A repeated cursor,
        more than a page of items beyond the reported count, or a run of empty pages that still
        point further are server bugs that would otherwise page forever: each fails the
        extraction (see :class:`~airflow_provider_lucca.client.paging.PagingGuard`).

        :param give_up_on_timeouts: see :meth:`get_json`.
        """
        limit = self.config.page_size
        base = [(k, v) for k, v in params if k not in ("fields.root", "limit", "page")]
        base += [("fields.root", "next,count"), ("limit", str(limit))]
        guard = PagingGuard(path, limit)
        cursor: str | None = None
        while True:
            query = base if cursor is None else [*base, ("page", cursor)]
            page = guard.accept(self.get_json(path, query, give_up_on_timeouts=give_up_on_timeouts))
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_realized_trainings(
        self,
        *,
        owner_ids: object = None,
        has_attended: object = None,
        session_end_on_after: object = None,
        session_end_on_before: object = None,
        training_ids: object = None,
        give_up_on_timeouts: int | None = None,
    ) -> Iterator[Page]:
        """Pages of ``GET /talent-training/api/v2/realized-trainings``.

        Filters are passed to the API exactly as given (the caller owns the meaning of the date
        bounds, which Lucca does not document for v2). Arguments are validated eagerly, so a bad
        one raises here, before the first request, not on the first ``next()``.

        :param give_up_on_timeouts: see :meth:`get_json`.
        """
        params = realized_trainings_params(
            owner_ids=owner_ids,
            has_attended=has_attended,
            session_end_on_after=session_end_on_after,
            session_end_on_before=session_end_on_before,
            training_ids=training_ids,
        )
        return self.paginate(
            REALIZED_TRAININGS_PATH, params, give_up_on_timeouts=give_up_on_timeouts
        )

    def count_realized_trainings(
        self,
        *,
        owner_ids: object = None,
        has_attended: object = None,
        session_end_on_after: object = None,
        session_end_on_before: object = None,
        training_ids: object = None,
        give_up_on_timeouts: int | None = None,
    ) -> int:
        """How many realized trainings the filters match, in one request and without reading
        them: ``fields.root=count&limit=0`` (the spec allows ``limit`` 0).

        :raises LuccaResponseError: the answer carries no count, or items.
        """
        params = realized_trainings_params(
            owner_ids=owner_ids,
            has_attended=has_attended,
            session_end_on_after=session_end_on_after,
            session_end_on_before=session_end_on_before,
            training_ids=training_ids,
        )
        params += [("fields.root", "count"), ("limit", "0")]
        body = self.get_json(
            REALIZED_TRAININGS_PATH, params, give_up_on_timeouts=give_up_on_timeouts
        )
        page = parse_page(body, number=1, limit=0, path=REALIZED_TRAININGS_PATH)
        if page.count is None:
            raise LuccaResponseError(
                f"GET {REALIZED_TRAININGS_PATH}: asked for fields.root=count, the answer has no "
                "count; cannot compare the committed data with Lucca's."
            )
        return page.count

    def check(self) -> int | None:
        """One cheap request (``limit=1``) that proves host, key and rights; returns the count."""
        body = self.get_json(REALIZED_TRAININGS_PATH, [("fields.root", "count"), ("limit", "1")])
        return parse_page(body, number=1, limit=1, path=REALIZED_TRAININGS_PATH).count


def _answer_event(status: int) -> str:
    """The metric an error answer counts in."""
    if status == 429:
        return events.RATE_LIMITED
    if status == 408:
        return events.TIMEOUTS
    if status >= 500:
        return events.SERVER_ERRORS
    return events.REFUSED


def _transport_kind(exc: BaseException) -> Transport:
    """What a transport error from ``requests`` is, for the retry decision."""
    if isinstance(exc, requests.exceptions.SSLError):
        # A handshake the server cut short (EOF, reset) is a dropped connection that another
        # attempt may not meet; a certificate or protocol refusal is met again every time.
        return Transport.CONNECTION if _handshake_cut_short(exc) else Transport.TLS
    if isinstance(exc, requests.exceptions.ConnectTimeout):  # also a ConnectionError
        return Transport.CONNECT_TIMEOUT
    if isinstance(exc, requests.Timeout):
        return Transport.READ_TIMEOUT
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return Transport.DROPPED
    return Transport.CONNECTION


def _members_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members, refused (ValueError) when a name comes twice."""
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("a member named twice")
    return members


#: ``\uD800``..``\uDFFF``: an escaped UTF-16 surrogate, which must come in pairs.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _refuse_unpaired_surrogates(body: JsonObject, content: bytes, path: str) -> None:
    """A string holding half of a UTF-16 pair (``"\\ud800"`` alone) is valid JSON but no text:
    it cannot be written as UTF-8 (nor read by DuckDB or Arrow), so the answer is refused, typed,
    before anything is spooled. Only a body holding such an escape is walked."""
    if _SURROGATE_ESCAPE.search(content) is None:
        return
    pending: list[Any] = [body]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise LuccaResponseError(
                    f"GET {path}: a string holds an unpaired UTF-16 surrogate escape "
                    f"({ascii(value)[:80]}), which is not text."
                ) from None
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def _handshake_cut_short(exc: BaseException) -> bool:
    """Whether a TLS error is the peer closing or resetting the connection mid-handshake."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        error = pending.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError)):
            return True
        if "UNEXPECTED_EOF" in str(error) or "EOF occurred in violation" in str(error):
            return True
        pending.extend([error.__cause__, error.__context__, getattr(error, "reason", None)])
        pending.extend(error.args)
    return False


_ERROR_KINDS: dict[int, type[LuccaAPIError]] = {
    401: LuccaAuthError,
    403: LuccaAuthError,
    404: LuccaNotFoundError,
    429: LuccaRateLimitError,
}

_HINTS = {
    401: "the API key is wrong or revoked",
    403: "the API key's role has no rights to this data; grant it in Lucca's API keys admin",
    404: "check the account URL",
    429: "the tenant's rate limit is reached",
}


def _classify(response: requests.Response, path: str, *, secret: str) -> LuccaAPIError:
    """Turn an error answer into a typed exception, before any retry decision is made.

    Text taken from the body is redacted of the API key, in case a server or proxy echoes it.
    """
    status = response.status_code
    title = detail = None
    excerpt = None
    try:
        problem = json.loads(response.content)
    except (ValueError, RecursionError):
        problem = None
    if isinstance(problem, dict) and ("title" in problem or "detail" in problem):
        title = _short(problem.get("title"), secret)
        detail = _short(problem.get("detail"), secret)
    else:
        excerpt = _excerpt(response, secret)
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        return LuccaRedirectError(
            f"GET {path} -> HTTP {status} redirect to {location[:120]!r}: not followed, so the API "
            "key never leaves the configured host. Check the account URL (https, exact host).",
            status=status,
            path=path,
        )
    kind = _ERROR_KINDS.get(status) or (
        LuccaServerError if status >= 500 or status == 408 else LuccaRequestError
    )
    explanation = "; ".join(part for part in (title, detail) if part) or (
        f"body: {excerpt!r}" if excerpt else "empty body"
    )
    hint = f" ({_HINTS[status]})" if status in _HINTS else ""
    return kind(
        f"GET {path} -> HTTP {status} {response.reason or ''}".rstrip() + f"{hint}: {explanation}",
        status=status,
        path=path,
        title=title,
        detail=detail,
        body_excerpt=excerpt,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def _reject_constant(name: str) -> object:
    """NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise."""
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number beyond float range (``1e400``) would become ``inf`` and be written back as
    ``Infinity``, which is not JSON: refuse it like NaN."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} is beyond the range of a float")
    return value


def _short(value: object, secret: str) -> str | None:
    if value is None:
        return None
    text = str(value).replace(secret, "***")
    return text if len(text) <= BODY_EXCERPT_CHARS else text[: BODY_EXCERPT_CHARS - 3] + "..."


def _excerpt(response: requests.Response, secret: str) -> str:
    text = response.content[: BODY_EXCERPT_CHARS + len(secret)].decode("utf-8", "replace")
    return text.replace(secret, "***")[:BODY_EXCERPT_CHARS].strip()
