"""Worker threads for the forecast's NumPy work: the simulation's chunks and
the stratum table's blocks of deals."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from vectoros.core.errors import Cancelled

# The project's VMs have two cores; see in_threads for why threads pay off.
WORKER_THREADS = 2


def in_threads(
    tasks: int,
    run: Callable[[int, Any], None],
    scratch: Callable[[], Any],
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """Runs ``run(task, scratch)`` for every task on up to ``WORKER_THREADS``
    threads, the caller's included; each thread makes its scratch once.

    NumPy's generators and ufuncs and scipy.special release the GIL, so on
    two cores two threads run nearly twice as fast. Tasks must not depend on
    which thread runs them or in which order. ``cancelled`` is polled before
    each task.
    """
    next_task = itertools.count()  # next() on a count is atomic under the GIL
    stop = threading.Event()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            own = scratch()
            while not stop.is_set():
                task = next(next_task)
                if task >= tasks:
                    return
                if cancelled is not None and cancelled():
                    raise Cancelled("the forecast was cancelled")
                run(task, own)
        except BaseException as error:  # handed to the calling thread
            failures.append(error)
            stop.set()

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(min(WORKER_THREADS, tasks) - 1)]
    for helper in helpers:
        helper.start()
    work()
    for helper in helpers:
        helper.join()
    if failures:
        raise failures[0]
