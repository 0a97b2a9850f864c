"""Typed errors, classified at the HTTP boundary so callers and retry logic never parse strings."""

from __future__ import annotations


class LuccaError(Exception):
    """Base class of every error raised by this provider."""


class LuccaConfigError(LuccaError, ValueError):
    """A parameter or connection setting is invalid; raised before any request is sent."""


class LuccaAPIError(LuccaError):
    """Lucca answered with an HTTP status that is an error for this request.

    Carries what a person needs to act: the status, the request path (never the query, which may
    hold long cursors, and never the key), and the problem+json ``title``/``detail`` when the body
    has them, or a short excerpt of the body otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        path: str = "",
        title: str | None = None,
        detail: str | None = None,
        body_excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.path = path
        self.title = title
        self.detail = detail
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after


class LuccaAuthError(LuccaAPIError):
    """401 (the API key is wrong or revoked) or 403 (the key's role lacks rights to the data)."""


class LuccaNotFoundError(LuccaAPIError):
    """404: the path does not exist on this host (wrong account URL or API version)."""


class LuccaRequestError(LuccaAPIError):
    """A 4xx other than auth and rate limits: the request itself is wrong and will not improve."""


class LuccaRateLimitError(LuccaAPIError):
    """429 whose Retry-After is above the cap (a 429 that outlasts the retries raises
    :class:`LuccaRetriesExhaustedError`)."""


class LuccaServerError(LuccaAPIError):
    """A 5xx that is not worth retrying (501, 505...), or whose Retry-After is above the cap.

    Retryable ones (500, 502, 503, 504, 408) that outlast the retries raise
    :class:`LuccaRetriesExhaustedError`.
    """


class LuccaTooSlowError(LuccaServerError):
    """The same request timed out (408 from Lucca after 5 s, or a read timeout) as many times as
    the caller allowed: a narrower request may pass where retrying this one would not.

    Raised only for callers that ask for it (``give_up_on_timeouts``): the extraction splits the
    window in halves, the reconciliation its count probe.
    """


class LuccaRedirectError(LuccaAPIError):
    """A 3xx answer. Redirects are never followed, so the key never travels to another host."""


class LuccaTLSError(LuccaAPIError):
    """The TLS handshake failed (untrusted or wrong certificate).

    Never retried, since a certificate does not become valid by waiting, and never bypassed:
    verification stays on so the key is not sent to a host that cannot prove who it is.
    """


class LuccaRetriesExhaustedError(LuccaAPIError):
    """The retry budget (attempts or total time) ran out on retryable failures."""

    def __init__(self, message: str, *, attempts: int, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.attempts = attempts


class LuccaResponseError(LuccaError):
    """A 2xx answer whose body breaks the contract (not JSON, wrong shape, repeating cursor...).

    Data from such an answer must never be committed: the extraction stops here.
    """


class LuccaNotJSONPageError(LuccaResponseError):
    """A 2xx answer that is an HTML page rather than JSON: a proxy's or a maintenance page put in
    front of Lucca, which goes away; Airflow's task retries read the window again later."""


class LuccaBudgetError(LuccaError):
    """The request budget shared by the workers (Redis) could not be reached or read.

    The extraction stops rather than pace itself alone, which would let several workers exceed
    the tenant's limit together; nothing is committed, and a task retry starts over.
    """
