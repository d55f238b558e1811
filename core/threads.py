"""How many BLAS threads the trainer's steps use: chosen by timing the steps, not by counting cores.

A multithreaded BLAS speeds a big matrix product up on an idle machine and stalls it on a busy one: a
thread waits at every barrier for a sibling that another process has descheduled (OpenBLAS at 2 threads
ran 0.08-0.28x of its 1-thread speed on 2 loaded cores). So the trainer's steps are timed one by one, at
1 thread and at the BLAS pool's own count (as it was when the chooser was made), and run at the faster.

It starts at 1 thread (never slower than a stall). The count not in use is tried again for one step
once the steps since its last try have taken REPAY times what that step cost (before its first try:
GUESS times the median of the first MEDIAN_OF steps), so trying costs at most about 1/REPAY of the time
however slow the other count is; each try it loses doubles the wait (up to MAX_BACKOFF times). A try
wins when its step took less than WIN times the median of the last steps at the current count; the
chooser then switches, and a win by chance is undone by the next try. A step that also ran a gradient
check is slow at any count: the median of the last MEDIAN_OF steps keeps one such step from deciding.

The records must not depend on the count: OpenBLAS splits a long sum (a product's inner dimension past
~1,000, as a weight gradient over many samples; a dot product past 10,000 entries) across its threads,
so its last bits change with the count. In place of the first try the chooser computes `same_bits()`
(the trainer's weight gradient) at 1 thread and, timed, at the pool's count; if the two differ it keeps
1 thread for good (a run stays deterministic for its seed; on an idle machine it gives up the pool's
speed-up then), else the timed call is the pool's first cost estimate.

Pure NumPy + threadpoolctl; the count is set process-wide (BLAS has one pool), so `block()` sets it for
the trainer's block of steps and puts the previous count back after.
"""
from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np

from threadpoolctl import ThreadpoolController

REPAY = 40           # a try of the other count waits until the steps since its last try took REPAY x its cost
GUESS = 10.0         # before its first try, the other count's step is guessed at GUESS x a current step
MAX_BACKOFF = 64     # each lost try doubles the wait, up to this factor
WIN = 0.9            # a try wins when its step took less than WIN x the current median
MEDIAN_OF = 5        # the current count's cost: the median of its last MEDIAN_OF steps

T = TypeVar("T")
_controller: ThreadpoolController | None = None


def _blas() -> ThreadpoolController:
    """The process's BLAS libraries (found once: finding them walks the loaded libraries)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


class ThreadChooser:
    """Runs steps at 1 BLAS thread or at the pool's count, whichever the timings say is faster."""

    def __init__(self, same_bits: Callable[[], np.ndarray] | None = None,
                 blas: ThreadpoolController | None = None) -> None:
        """same_bits() -> an array the records depend on (the weight gradient (n_w,)): compared at 1 thread
        and at the pool's count in place of the first try; None: not compared."""
        self.blas = blas if blas is not None else _blas()
        self.pool = max((lib.num_threads for lib in self.blas.lib_controllers), default=1)
        self.most = self.pool          # the highest count the chooser uses: 1 once same_bits() differed
        self.same_bits = same_bits
        self.current = 1
        self.recent: deque[float] = deque(maxlen=MEDIAN_OF)   # seconds per step at self.current
        self.other_cost: float | None = None                  # the other count's last step, in seconds
        self.since_try = 0.0                                  # seconds of steps since the other was tried
        self.backoff = 1
        self.wait: float | None = None   # seconds of steps before the next try (None: not known yet)
        self.trying = False

    @property
    def other(self) -> int:
        return self.most if self.current == 1 else 1

    @contextmanager
    def block(self) -> Iterator[None]:
        """The trainer's block of steps runs at the chosen count; the previous counts are put back after."""
        if self.pool <= 1:
            yield
            return
        previous = [lib.num_threads for lib in self.blas.lib_controllers]
        self._set(self.current)
        try:
            yield
        finally:
            for lib, count in zip(self.blas.lib_controllers, previous):
                lib.set_num_threads(count)

    def timed(self, step: Callable[[], T]) -> T:
        """step() at the chosen count (inside `block()`), timed; the count for the next step chosen."""
        if self.most <= 1:
            return step()
        start = time.perf_counter()
        result = step()
        self._observe(time.perf_counter() - start)
        return result

    def _compare_bits(self) -> None:
        """In place of the first try (at 1 thread): same_bits() at 1 and, timed, at the pool's count; 1 thread
        for good if their bits differ, else the timed call is the pool's first cost estimate."""
        check, self.same_bits = self.same_bits, None
        one = np.array(check(), copy=True)
        self._set(self.pool)
        start = time.perf_counter()
        other = check()
        self.other_cost = time.perf_counter() - start
        self._set(self.current)
        if not np.array_equal(one, other, equal_nan=True):
            self.most = 1
        self.since_try, self.wait = 0.0, REPAY * self.backoff * self.other_cost

    def _observe(self, seconds: float) -> None:
        if self.trying:
            self.trying = False
            if self.recent and seconds < WIN * statistics.median(self.recent):
                self.other_cost, self.backoff = statistics.median(self.recent), 1
                self.current = self.other
                self.recent = deque([seconds], maxlen=MEDIAN_OF)
            else:
                self.other_cost = seconds
                self.backoff = min(MAX_BACKOFF, 2 * self.backoff)
            self.since_try, self.wait = 0.0, REPAY * self.backoff * self.other_cost
            self._set(self.current)
            return
        self.recent.append(seconds)
        self.since_try += seconds
        if self.wait is None:   # before the first try: the other count guessed from the first steps
            if len(self.recent) < MEDIAN_OF:
                return
            self.wait = REPAY * GUESS * statistics.median(self.recent)
        if self.since_try < self.wait or self.most <= 1:
            return
        if self.same_bits is not None:
            self._compare_bits()
        else:
            self.trying = True
            self._set(self.other)

    def _set(self, count: int) -> None:
        for lib in self.blas.lib_controllers:
            lib.set_num_threads(count)
