"""The one way tests wait: poll a condition until it holds, never a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.05,
               what: str = "the condition") -> T:
    """Call `check` until it returns something true (returned) or stops raising
    AssertionError; fail after `timeout` seconds with what it last said."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except AssertionError as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g}s (last: {last!r})")
        time.sleep(interval)


async def eventually_async(check: Callable[[], Awaitable[T] | T], timeout: float = 20.0,
                           interval: float = 0.02, what: str = "the condition") -> T:
    """`eventually` for tests on an event loop: `check` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
        except AssertionError as exc:
            last = exc
        else:
            if value:
                return value  # type: ignore[return-value]
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g}s (last: {last!r})")
        await asyncio.sleep(interval)
