"""Progress on stderr for long commands: ``put file``, ``get file``, ``wait job|commit``.

One decision, made here for every command (:func:`choose`):

* ``--no-progress``: nothing.
* ``--progress``: a bar if stderr is a terminal, else the plain text lines
  ``put file --progress`` always printed (one every 2 s, for logs).
* neither (auto): a bar only if stderr is a terminal and the output is not
  ``--raw`` (nor, for ``get file``, file content printed on the same
  terminal); and only once the operation is *large*: a known total over
  :data:`BIG_BYTES` or :data:`BIG_FILES`, or still running after
  :data:`DELAY` seconds. Piped stderr never gets an escape code, whatever
  ``FORCE_COLOR`` or ``TERM`` say: the terminal test is ours, not rich's.

Commands see three small objects: :class:`Transfer` (``advance(nbytes)``,
``file_done(path)``; the shape of :class:`tusk.s3_import.Progress`, so it is
passed straight to the client), :class:`Datums` (``update(done, total,
state)``) and :class:`Spinner`; each is a context manager that draws its
last state on exit. Bars are drawn by ``rich`` (imported only when one is
shown: loading it costs the CLI's start-up ~30 ms otherwise).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import IO, Any, Literal

from cli.output import human_size

__all__ = [
    "BIG_BYTES",
    "BIG_FILES",
    "DELAY",
    "Datums",
    "Mode",
    "Spinner",
    "Transfer",
    "add_progress_flags",
    "choose",
]

#: Bytes past which a transfer with a known total shows a bar at once.
BIG_BYTES = 8 << 20
#: Files past which a transfer with a known count shows a bar at once.
BIG_FILES = 10
#: Seconds after which anything still running shows its bar (auto mode).
DELAY = 1.0

#: ``bar``: rich on a terminal; ``text``: plain lines (``--progress`` without
#: a terminal); ``auto``: a bar once large (see the module doc); ``off``.
Mode = Literal["bar", "text", "auto", "off"]


def add_progress_flags(p: argparse.ArgumentParser, what: str) -> None:
    """``--progress`` / ``--no-progress`` (default: automatic on a terminal)."""
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"show {what} on stderr (default: a bar when stderr is a terminal and it "
        "takes a while; --progress without a terminal prints text lines)",
    )


def choose(flag: bool | None, stream: IO[str] | None = None, quiet: bool = False) -> Mode:
    """The mode for ``--progress``/``--no-progress`` (``flag``: True/False/None).

    Args:
        flag: the parsed flag; None when neither was given.
        stream: where progress goes (stderr).
        quiet: the automatic bar is unwanted (``--raw`` output, file content
            on the terminal); ``--progress`` still forces it.
    """
    stream = stream if stream is not None else sys.stderr
    tty = _isatty(stream)
    if flag is False:
        return "off"
    if flag:
        return "bar" if tty else "text"
    return "auto" if tty and not quiet else "off"


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


class _Display:
    """What the three kinds share: a rich ``Progress`` started now (``bar``),
    later (``auto``: once large or after :data:`DELAY`), or never; or text lines.

    Thread safety: the delay timer starts the bar from its own thread, so
    starting and stopping go through one lock.
    """

    def __init__(self, mode: Mode, stream: IO[str] | None) -> None:
        self.mode = mode
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()
        self._progress: Any = None   # rich.progress.Progress, once made
        self._task: Any = None
        self._live = False
        self._closed = False
        self._timer: threading.Timer | None = None
        self._start_time = time.monotonic()
        self._shown = 0.0            # when the last text line was written

    # rich

    def _columns(self) -> list[Any]:
        raise NotImplementedError

    def _make(self, description: str, total: float | None, **fields: Any) -> None:
        if self.mode not in ("bar", "auto"):
            return
        from rich.console import Console
        from rich.progress import Progress

        # force_terminal: we decided it is one (choose); rich must not second-guess
        # with TERM/NO_COLOR, nor draw on a pipe because of FORCE_COLOR.
        console = Console(file=self.stream, force_terminal=True, force_interactive=True)
        self._progress = Progress(*self._columns(), console=console, transient=False,
                                  redirect_stdout=False, redirect_stderr=False,
                                  refresh_per_second=10)
        self._task = self._progress.add_task(description, total=total, **fields)
        if self.mode == "bar":
            self._start()
        else:
            self._timer = threading.Timer(DELAY, self._start)
            self._timer.daemon = True
            self._timer.start()

    def _start(self) -> None:
        with self._lock:
            if self._live or self._closed or self._progress is None:
                return
            self._live = True
            self._progress.start()

    def _update(self, **kw: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **kw)

    @property
    def shown(self) -> bool:
        """Whether a bar is on screen (tests use it)."""
        return self._live

    # text lines (the --progress behaviour without a terminal)

    def _text_line(self) -> str:
        raise NotImplementedError

    def _maybe_text(self, final: bool = False) -> None:
        if self.mode != "text":
            return
        now = time.monotonic()
        if final or now - self._shown >= 2.0:
            self._shown = now
            self.stream.write(self._text_line() + "\n")
            self.stream.flush()

    def _elapsed(self) -> float:
        return max(time.monotonic() - self._start_time, 1e-6)

    # lifetime

    def close(self) -> None:
        """Stop the bar (its last state stays on screen) or write the last line."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._live:
                self._progress.refresh()
                self._progress.stop()
        self._maybe_text(final=True)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transfer(_Display):
    """Bytes and files moved (``put file``, ``get file``).

    ``total_bytes``/``total_files`` are what is known before the transfer
    (None: unknown, e.g. stdin, URLs, S3 prefixes); with a known total the
    bar fills, without one it pulses and counts.
    """

    def __init__(self, label: str, mode: Mode, total_bytes: int | None = None,
                 total_files: int | None = None, stream: IO[str] | None = None) -> None:
        super().__init__(mode, stream)
        self.label = label
        self.bytes = 0
        self.files = 0
        self.total_files = total_files
        self._make(label, total_bytes, files=self._files_text())
        if self.mode == "auto" and ((total_bytes or 0) > BIG_BYTES
                                    or (total_files or 0) > BIG_FILES):
            self._start()

    def _columns(self) -> list[Any]:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        return [TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TextColumn("{task.fields[files]}"),
                TimeRemainingColumn()]

    def _files_text(self) -> str:
        if self.total_files is not None:
            return f"{self.files}/{self.total_files} files"
        return "1 file" if self.files == 1 else f"{self.files} files"

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more bytes moved."""
        self.bytes += nbytes
        self._update(completed=self.bytes)
        self._maybe_text()

    def file_done(self, path: str) -> None:
        """One more file moved in full."""
        self.files += 1
        self._update(files=self._files_text())
        if self.mode == "auto" and self.files > BIG_FILES:
            self._start()
        self._maybe_text()

    def _text_line(self) -> str:
        secs = self._elapsed()
        files = "1 file" if self.files == 1 else f"{self.files} files"
        return (f"{self.label}: {files}, {human_size(self.bytes)} "
                f"({human_size(int(self.bytes / secs))}/s, {secs:.1f}s)")


class Datums(_Display):
    """A job's datums done (processed + skipped + failed + recovered) of its total."""

    def __init__(self, label: str, mode: Mode, stream: IO[str] | None = None) -> None:
        super().__init__(mode, stream)
        self.label = label
        self.done = 0
        self.total = 0
        self.state = ""
        self._make(label, None, state="")

    def _columns(self) -> list[Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        return [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("datums {task.fields[state]}"), TimeElapsedColumn()]

    def update(self, done: int, total: int, state: str = "") -> None:
        """The job's counts now; ``total`` 0 while its datums are being planned."""
        self.done, self.total, self.state = done, total, state
        self._update(completed=done, total=total or None, state=state)
        self._maybe_text()

    def _text_line(self) -> str:
        total = self.total if self.total else "?"
        return f"{self.label}: {self.done}/{total} datums {self.state} ({self._elapsed():.1f}s)"


class Spinner(_Display):
    """Something without counts to wait for (a user commit being finished)."""

    def __init__(self, label: str, mode: Mode, stream: IO[str] | None = None) -> None:
        super().__init__(mode, stream)
        self.label = label
        self._make(label, None)

    def _columns(self) -> list[Any]:
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        return [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]

    def _text_line(self) -> str:
        return f"{self.label} ({self._elapsed():.1f}s)"
