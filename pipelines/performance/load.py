"""Closed-loop load: `concurrency` workers, each sending its next request as soon as the last one answered.

The same loop drives every path the benchmark compares (in process, Triton over HTTP, gRPC and
shared memory, the Flask baseline), so their figures differ only by what serves the request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Send = Callable[[], Any]


@dataclass(frozen=True)
class LoadResult:
    """Latencies (seconds) of the requests answered inside the measurement window, and the window's length."""

    latencies_s: tuple[float, ...]
    elapsed_s: float
    failures: int
    first_failure: str = ""

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    def per_second(self, batch: int = 1) -> float:
        """Inferences (samples) per second."""
        return self.requests * batch / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies_s), q) * 1e3) if self.latencies_s else float("nan")


def closed_loop(
    make_sender: Callable[[], Send],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    close: Callable[[Send], None] | None = None,
    on_begin: Callable[[], None] | None = None,
) -> LoadResult:
    """Run `concurrency` workers for `warmup_s` (not counted) then `duration_s` (counted).

    `on_begin` runs when the counted window opens: the server's statistics taken there leave out the
    warm-up (whose first request at a new batch size is slow), as the client's figures do.

    `make_sender` is called once per worker (its own client); a failed request is counted, not retried.
    A window that no answer reached (a request slower than the window, on a busy host) stays open until the
    first answer and closes there, so that every point measures something; the elapsed time says how long.
    """
    senders = [make_sender() for _ in range(concurrency)]
    start_barrier = threading.Barrier(concurrency + 1)
    window: list[float] = []
    results: list[list[float]] = [[] for _ in range(concurrency)]
    failures: list[str] = []
    counted = threading.Event()  # an answer was counted: the window may close at its planned end
    closed_late: list[float] = []  # the first answer after a window that none reached: where it closed
    lock = threading.Lock()

    def worker(index: int) -> None:
        send, mine = senders[index], results[index]
        start_barrier.wait()
        begin, end = window
        give_up = end + max(30.0, 10 * duration_s)  # clients time out long before; this bounds a silent server
        while True:
            t0 = time.perf_counter()
            if t0 >= end and (counted.is_set() or failures or t0 >= give_up):
                return
            try:
                send()
            except Exception as exc:  # noqa: BLE001 - every client's errors: counted, the first one kept
                failures.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                continue
            t1 = time.perf_counter()
            if t1 < begin:
                continue
            with lock:  # answered inside the window (counted, as perf_analyzer counts), or the late first one
                if t1 <= end or not counted.is_set():
                    mine.append(t1 - t0)
                    if t1 > end:
                        closed_late.append(t1)
                    counted.set()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    window.extend([now + warmup_s, now + warmup_s + duration_s])
    start_barrier.wait()
    if on_begin is not None:
        time.sleep(max(0.0, window[0] - time.perf_counter()))
        on_begin()
    for thread in threads:
        thread.join()
    if close is not None:
        for send in senders:
            close(send)
    latencies = tuple(x for r in results for x in r)
    elapsed = closed_late[0] - window[0] if closed_late else duration_s
    return LoadResult(latencies, elapsed, len(failures), failures[0] if failures else "")
