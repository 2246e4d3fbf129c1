"""Which event-loop callbacks held the loop, by the loop thread's own CPU time.

asyncio's debug mode logs callbacks that took long on the clock. On a loaded machine that
also counts the time the loop thread waited for a CPU or for the GIL while another
process or a store thread ran: a one-millisecond callback is reported at 150 ms, and the
tests that guard the loop failed for what the machine did, not for what the code did.
Measured as the loop thread's CPU time, a callback is slow only when its own work is.

Installed with asyncio's debug mode only (the tests and bench/faults.py run with it):
the measurement costs two clock reads per callback.
"""

from __future__ import annotations

import asyncio.events
import logging
import time
import traceback

log = logging.getLogger("workdeck.loop")

MESSAGE = "event-loop callback used %.3f s of CPU (%.3f s on the clock): %s"
PATTERN = r"event-loop callback used (\d+\.\d+) s of CPU"  # what the tests read

_installed = False


def install(threshold_s: float) -> None:
    """Log every callback whose CPU time on the loop thread passes `threshold_s`."""
    global _installed
    if _installed:
        return
    _installed = True
    run = asyncio.events.Handle._run

    def measured(handle: asyncio.events.Handle) -> None:
        cpu, clock = time.thread_time(), time.perf_counter()
        run(handle)
        used = time.thread_time() - cpu
        if used >= threshold_s:
            # The task a step belongs to says more than the step's wrapper does.
            what = getattr(handle._callback, "__self__", handle)  # type: ignore[attr-defined]
            log.warning(MESSAGE, used, time.perf_counter() - clock, repr(what)[:300])

    asyncio.events.Handle._run = measured  # type: ignore[method-assign]


STORE_ON_LOOP = "the store was used on the event-loop thread"  # what the tests look for


def off_the_loop() -> None:
    """Say so when the store is used on the loop thread. A query there holds every
    client for as long as the database lock is busy, which CPU time does not show."""
    if _installed and asyncio.events._get_running_loop() is not None:
        log.warning("%s:\n%s", STORE_ON_LOOP, "".join(traceback.format_stack(limit=8)[:-1]))
