"""A job's progress in the terminal: a bar redrawn in place on a terminal, plain lines in a log."""

from __future__ import annotations

from typing import TextIO

__all__ = ["ProgressBar"]

WIDTH = 24
_LOG_STEP = 25  # in a log, a line every this many percent


class ProgressBar:
    def __init__(self, stream: TextIO, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.shown: tuple[str, int, str] | None = None
        self.drawn = 0  # characters of the line being redrawn

    def show(self, label: str, percent: int, status: str) -> None:
        percent = max(0, min(100, percent))
        if self.tty:
            filled = WIDTH * percent // 100
            line = f"{label} [{'#' * filled}{'.' * (WIDTH - filled)}] {percent:3d}% {status}"
            self.stream.write("\r" + line.ljust(self.drawn))
            self.drawn = len(line)
            self.stream.flush()
            return
        bucket = percent // _LOG_STEP * _LOG_STEP
        if self.shown == (label, bucket, status):
            return
        self.shown = (label, bucket, status)
        self.stream.write(f"{label} {percent:3d}% {status}\n")
        self.stream.flush()

    def done(self) -> None:
        """End the line being redrawn, so the next output starts on a line of its own."""
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
        self.drawn = 0
        self.shown = None
