"""Defaults and bounds of the connection's settings: the one place they are written.

:class:`~airflow_provider_lucca.client.config.ClientConfig` and
:class:`~airflow_provider_lucca.client.retry.RetryPolicy` take their defaults from here,
``LuccaHook`` checks a connection's extras against these bounds, and the connection form of
``get_provider_info`` shows the same defaults, minimums and maximums: the UI, the hook and the
client cannot disagree. No import: Airflow reads the form at start-up, before anything else of the
provider is needed.
"""

from __future__ import annotations

DEFAULT_REQUESTS_PER_MINUTE = 50
DEFAULT_PAGE_SIZE = 100
DEFAULT_TIMEOUT = 30.0
#: Retries of one request after its first attempt: ``RetryPolicy.max_attempts`` is one more.
DEFAULT_MAX_RETRIES = 5
#: Timeouts of one request (Lucca's 408 after 5 s, or a read timeout) after which a caller that
#: can narrow it (a window split in halves) gives up on it: two may be a busy moment, a third is
#: a request too heavy for Lucca's limit, and retrying it would spend every attempt the same way.
TIMEOUTS_BEFORE_SPLIT = 3
#: A page of 100 realized trainings is a few tens of kilobytes; anything near this is not one.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024

# Bounds (both included) of the settings. ClientConfig checks them, and LuccaHook checks the
# connection's extras against the same constants, so the two can never disagree.

#: 0 disables pacing. 6000 (100 a second) is already 120 times Lucca's limit per tenant: anything
#: above is a typo, and ``1e300`` would otherwise switch the pacing off without a word.
REQUESTS_PER_MINUTE_RANGE = (0, 6000)
#: Lucca's ``limit`` parameter.
PAGE_SIZE_RANGE = (1, 100)
#: Seconds, for a connection's ``timeout`` extra. Lucca aborts requests after 5 s, so one second
#: is the least that makes sense against a real account and five minutes the most; ClientConfig
#: itself also accepts sub-second values (a local sandbox), never above the maximum. Unbounded,
#: ``10**12`` raised OverflowError in the socket layer at the first request.
TIMEOUT_RANGE = (1.0, 300.0)
#: Retries of one request (the connection's ``max_retries`` extra).
MAX_RETRIES_RANGE = (0, 20)
#: Bytes of one answer, held in memory: Lucca's documented payload maximum is 100 MB.
MAX_RESPONSE_BYTES_RANGE = (1, 100 * 1024 * 1024)
