"""What a command shows on the terminal, and the full log of everything else.

`mimo run` without `--verbose` runs inside `quiet(log_path)`: the process's file descriptors 1
and 2 point at the log file, so whatever TensorFlow, CUDA, Beam workers or any C++ library write
goes there; Python's `sys.stdout` / `sys.stderr` write to both the terminal and the log, so the
runner's own lines (progress, warnings of our components, results, the error) are seen and kept
(while the pipeline runs, `stderr_to_log_only` keeps other libraries' stderr in the log).
Python warnings go to the log only; log records reach the terminal through `terminal_handler`'s
filter.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Log:
    path: str
    stream: io.TextIOBase


_active: list[Log] = []


def active_log() -> Log | None:
    """The log of the quiet() block we are in (None: not quiet, everything on the terminal)."""
    return _active[-1] if _active else None


class Tee(io.TextIOBase):
    """A text stream writing to several streams (the terminal and the log)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()

    def isatty(self) -> bool:
        return self.streams[0].isatty()


def _kept(stream, fd: int):
    """`stream`, writable after fd `fd` is redirected: a duplicate of the fd when the stream
    writes to it (a terminal, a pipe), else the stream itself (e.g. a test's capture)."""
    try:
        if stream.fileno() == fd:
            stream.flush()
            return open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return stream


@contextmanager
def quiet(log_path: str):
    """Runs the block with fds 1 and 2 in `log_path` and sys.stdout/err teed to terminal + log.
    Yields the Log (its stream takes what the terminal should not show, e.g. tracebacks)."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    out, err = sys.stdout, sys.stderr
    terminal_out, terminal_err = _kept(out, 1), _kept(err, 2)
    saved = [os.dup(1), os.dup(2)]
    for fd in (1, 2):
        os.dup2(log.fileno(), fd)
    sys.stdout, sys.stderr = Tee(terminal_out, log), Tee(terminal_err, log)
    try:
        with warnings.catch_warnings():  # Python's warnings: into the log only

            def to_log(message, category, filename, lineno, file=None, line=None):
                log.write(warnings.formatwarning(message, category, filename, lineno, line))

            warnings.showwarning = to_log
            _active.append(Log(os.path.abspath(log_path), log))
            yield _active[-1]
    finally:
        _active.pop()
        for s in (sys.stdout, sys.stderr):
            s.flush()
        sys.stdout, sys.stderr = out, err
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        for s in (terminal_out, terminal_err):
            if s not in (out, err):
                s.close()
        log.close()


@contextmanager
def stderr_to_log_only():
    """Inside quiet(): Python-level writes to sys.stderr go to the log only for the block (e.g.
    while the pipeline runs: Beam's workers print tracebacks of failed steps straight to
    sys.stderr). Elsewhere a no-op."""
    log = active_log()
    if log is None or not isinstance(sys.stderr, Tee):
        yield
        return
    tee, sys.stderr = sys.stderr, log.stream
    try:
        yield
    finally:
        sys.stderr = tee


class _Brief(logging.Formatter):
    """Time and message: an error's traceback stays in the log."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{self.formatTime(record, '%H:%M:%S')} {record.getMessage()}"


def terminal_handler(keep) -> logging.Handler:
    """A handler on the terminal (sys.stderr when quiet() began) that passes records for which
    `keep(record)` is true, without tracebacks."""
    stream = sys.stderr.streams[0] if isinstance(sys.stderr, Tee) else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Brief())
    handler.addFilter(keep)
    return handler
