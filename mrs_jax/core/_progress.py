"""Progress of long loops: a tqdm bar on a terminal, plain lines in a log file.

A bar redraws itself with carriage returns, which fill a log file with one
unreadable line. Where the stream is not a terminal, :class:`LineProgress`
writes one line every ``every_s`` seconds (and one at the end) with the count,
the rate and the time left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO


def duration(seconds: float) -> str:
    """``seconds`` as ``1h02m``, ``3m05s`` or ``12s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class LineProgress:
    """A tqdm-like counter that writes plain lines to a file-like stream.

    Supports the part of tqdm's interface the library uses: ``update``,
    ``set_postfix``, ``write``, ``close`` and iteration over ``iterable``.

    Args:
      total: the count when done.
      desc: what is counted (the line's prefix).
      unit: the unit of one count.
      initial: the count already done (a resumed run).
      stream: where lines go (default: standard error).
      every_s: seconds between lines.
      later: units still to come after this loop at the same rate (for a
        whole run's time left, e.g. the steps of a training run's later epochs).
      iterable: what to iterate over, counting one per item (optional).
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        stream: TextIO | None = None,
        every_s: float = 60.0,
        later: int = 0,
        iterable: Any = None,
    ):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self.start_n = int(initial)
        self.stream = sys.stderr if stream is None else stream
        self.every_s = float(every_s)
        self.later = int(later)
        self.iterable = iterable
        self.postfix: dict[str, Any] = {}
        self.started = self.last = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def rate(self) -> float | None:
        """Seconds per unit so far in this process, or None before the first."""
        done = self.n - self.start_n
        return (time.monotonic() - self.started) / done if done > 0 else None

    def line(self) -> str:
        """The current progress line."""
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        rate = self.rate()
        if rate is not None:
            parts.append(f"{rate:.3g} s/{self.unit}")
            left = rate * max(0, self.total - self.n)
            parts.append(f"{duration(left)} left")
            if self.later:
                parts.append(f"{duration(left + rate * self.later)} left in all")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        return ", ".join(parts)

    def update(self, count: int = 1) -> None:
        self.n += count
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.write(self.line())

    def set_postfix(
        self, values: Mapping[str, Any] | None = None, refresh: bool = True, **kwargs
    ) -> None:
        self.postfix = {**dict(values or {}), **kwargs}

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.n > self.start_n:
            self.write(self.line())


def progress_bar(
    total: int,
    *,
    desc: str,
    unit: str = "it",
    initial: int = 0,
    enabled: bool | None = None,
    stream: TextIO | None = None,
    every_s: float = 60.0,
    later: int = 0,
    iterable: Any = None,
):
    """A progress display, or None.

    ``enabled``: False shows nothing; True or None shows a tqdm bar when
    ``stream`` (default: standard error) is a terminal, else a
    :class:`LineProgress`.
    """
    if enabled is False:
        return None
    stream = sys.stderr if stream is None else stream
    if getattr(stream, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(
            iterable, total=total, initial=initial, desc=desc, unit=unit,
            file=stream, leave=False,
        )
    return LineProgress(
        total, desc=desc, unit=unit, initial=initial, stream=stream,
        every_s=every_s, later=later, iterable=iterable,
    )
