"""Deliver with retries: exponential backoff, Retry-After honoured, bounded attempts.

>>> import asyncio
>>> from stream.alerting.config import RetryPolicy
>>> calls = []
>>> def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise DeliveryError("HTTP 500")
>>> async def no_sleep(s): pass
>>> asyncio.run(deliver(flaky, RetryPolicy(), sleep=no_sleep)).attempts
3
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from stream.alerting.config import RetryPolicy
from stream.alerting.notification import DeliveryError

log = logging.getLogger("glassbox.alerting")


@dataclass
class Outcome:
    """How a delivery ended: ``ok`` or given up with ``error``; ``waits`` are the sleeps between attempts."""

    ok: bool
    attempts: int
    error: str | None = None
    waits: list[float] = field(default_factory=list)


async def deliver(
    send: Callable[[], None],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    in_thread: bool = False,
    label: str = "delivery",
    redact: Callable[[str], str] = lambda s: s,
) -> Outcome:
    """Call ``send`` until it returns, a permanent error, or ``policy.max_attempts``.

    A 429 waits its Retry-After (capped at ``max_retry_after``), anything else retryable waits the
    exponential backoff. Any exception other than DeliveryError counts as retryable (bounded by attempts).
    """
    waits: list[float] = []
    attempt = 0
    while True:
        attempt += 1
        try:
            if in_thread:
                await asyncio.get_running_loop().run_in_executor(None, send)
            else:
                send()
            return Outcome(True, attempt, waits=waits)
        except DeliveryError as exc:
            reason, retryable, retry_after = exc.reason, exc.retryable, exc.retry_after
        except Exception as exc:  # network errors, timeouts, malformed responses
            reason, retryable, retry_after = f"{type(exc).__name__}: {exc}", True, None
        reason = redact(reason)
        if not retryable or attempt >= policy.max_attempts:
            log.warning("%s gave up after %d attempt(s): %s", label, attempt, reason)
            return Outcome(False, attempt, reason, waits)
        wait = min(retry_after, policy.max_retry_after) if retry_after is not None else policy.backoff(attempt)
        log.info("%s attempt %d failed (%s); retrying in %.2fs", label, attempt, reason, wait)
        waits.append(wait)
        await sleep(wait)
