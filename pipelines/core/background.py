"""Work that overlaps a wait: the framework references are computed while Triton loads its models.

A daemon thread, so a server that fails to start is reported at once, not after the work ends.
(Checking the first models while later references are computed was tried: on 2 cores it is slower.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """`fn()` started now in a thread; `result()` waits for it and returns its value or raises its exception."""

    def __init__(self, fn: Callable[[], T], name: str = "background"):
        self._value: list[T] = []
        self._error: list[BaseException] = []

        def target() -> None:
            try:
                self._value.append(fn())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread, where it is handled
                self._error.append(exc)

        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def result(self) -> T:
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._value[0]
