"""How the CLI prints: human tables and blocks, or raw JSON/YAML messages.

pachctl's rules (pachyderm-reference.md 3.1): tables with aligned columns and
relative times by default; ``--raw`` prints each protobuf message as one JSON
object (one per line, streamed); ``--raw -o yaml`` prints YAML documents;
``-o`` without ``--raw`` is a usage error.

Lists are streamed: a :class:`Table` buffers only its first few rows to choose
column widths, then prints every further row as it arrives, so listing a
million files never holds a million rows in memory.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

# yaml and protobuf's json_format are imported where used: together ~30 ms of
# every command's start-up, and most commands print tables.

# Rows buffered to size the columns before streaming the rest (enough for the
# common short list to be perfectly aligned, small enough to start printing fast).
_SIZING_ROWS = 64
_COLUMN_GAP = 3  # pachctl's tabwriter pads with at least this many spaces


# --- values -------------------------------------------------------------------


def human_size(n: int) -> str:
    """Binary-prefixed size as pachctl prints it: ``0 B``, ``512 B``, ``1.2 KiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024.0
        if value < 1024.0 or unit == "PiB":
            return f"{value:.4g} {unit}"
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """A coarse duration in words (Docker's ``HumanDuration``, which pachctl uses)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def relative_time(ts: float | None, now: float | None = None) -> str:
    """``5 seconds ago``; ``-`` for an unset time."""
    if ts is None:
        return "-"
    now = time.time() if now is None else now
    return human_duration(max(0.0, now - ts)) + " ago"


def absolute_time(ts: float | None) -> str:
    """ISO-like local time for inspect blocks and ``--full-timestamps``."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def timestamp(msg: Any, field: str) -> float | None:
    """Seconds since the epoch of a ``google.protobuf.Timestamp`` field, or None if unset."""
    if not msg.HasField(field):
        return None
    ts = getattr(msg, field)
    return float(ts.seconds) + float(ts.nanos) / 1e9


def enum_name(msg: Any, field: str) -> str:
    """The symbolic name of an enum field's value, without importing the stubs."""
    value = getattr(msg, field)
    enum = msg.DESCRIPTOR.fields_by_name[field].enum_type
    named = enum.values_by_number.get(value)
    return str(named.name) if named is not None else str(value)


def message_dict(msg: Any) -> dict[str, Any]:
    """The JSON form of a message, with the proto's snake_case field names."""
    from google.protobuf.json_format import MessageToDict

    result: dict[str, Any] = MessageToDict(msg, preserving_proto_field_name=True)
    return result


# --- writers ------------------------------------------------------------------


class Table:
    """A streaming, column-aligned table.

    The first :data:`_SIZING_ROWS` rows are buffered to pick column widths;
    later rows are printed immediately with those widths (a longer cell just
    pushes its row's later columns right, as tabwriter does when flushed).
    """

    def __init__(self, header: Sequence[str], out: IO[str] | None = None) -> None:
        self._header = list(header)
        self._out = out if out is not None else sys.stdout
        self._buffer: list[list[str]] | None = [self._header]
        self._widths: list[int] = []

    def row(self, cells: Sequence[str]) -> None:
        """Add one row; printed now if the widths are already fixed."""
        cells = [str(c) for c in cells]
        if self._buffer is None:
            self._write(cells)
            return
        self._buffer.append(cells)
        if len(self._buffer) > _SIZING_ROWS:
            self._flush_buffer()

    def close(self) -> None:
        """Print whatever is still buffered (at least the header)."""
        if self._buffer is not None:
            self._flush_buffer()
        self._out.flush()

    def _flush_buffer(self) -> None:
        assert self._buffer is not None
        rows, self._buffer = self._buffer, None
        self._widths = [max(len(r[i]) for r in rows) for i in range(len(self._header))]
        for r in rows:
            self._write(r)

    def _write(self, cells: list[str]) -> None:
        parts = [
            c.ljust(self._widths[i] + _COLUMN_GAP) if i < len(cells) - 1 else c
            for i, c in enumerate(cells)
        ]
        self._out.write("".join(parts).rstrip() + "\n")


class Printer:
    """Chooses between human output and ``--raw`` messages, once per command.

    Args:
        raw: print protobuf messages instead of tables.
        fmt: ``json`` or ``yaml`` (only with ``raw``).
        full_timestamps: absolute times instead of "5 minutes ago".
    """

    def __init__(
        self,
        raw: bool = False,
        fmt: str = "json",
        full_timestamps: bool = False,
        out: IO[str] | None = None,
    ) -> None:
        self.raw = raw
        self.fmt = fmt
        self.full_timestamps = full_timestamps
        self.out = out if out is not None else sys.stdout

    def when(self, ts: float | None) -> str:
        """A time cell: relative by default, absolute with ``--full-timestamps``."""
        return absolute_time(ts) if self.full_timestamps else relative_time(ts)

    def message(self, msg: Any) -> None:
        """Print one message in the raw format (flushed, so streams stay live)."""
        self.data(message_dict(msg))

    def data(self, data: dict[str, Any]) -> None:
        """Print one JSON object in the raw format: a message's dict with
        fields a command adds (``inspect file --raw``: the datum's inputs)."""
        if self.fmt == "yaml":
            import yaml

            self.out.write(yaml.safe_dump(data, sort_keys=False, explicit_start=True))
        else:
            self.out.write(json.dumps(data) + "\n")
        self.out.flush()

    def items(
        self,
        items: Iterable[Any],
        header: Sequence[str],
        row: Callable[[Any], Sequence[str]],
    ) -> int:
        """Print a stream of messages as a table (or raw); returns how many."""
        count = 0
        if self.raw:
            for item in items:
                self.message(item)
                count += 1
            return count
        table = Table(header, self.out)
        try:
            for item in items:
                table.row(row(item))
                count += 1
        except BaseException:
            # Print what arrived if the stream failed half-way (not a lone
            # header when the very first call failed), then let the error
            # propagate to the one place that reports it.
            if count:
                table.close()
            raise
        table.close()
        return count

    def block(self, msg: Any, lines: Callable[[Any], Iterable[tuple[str, str]]]) -> None:
        """Print one message as a ``Key: value`` block (or raw)."""
        if self.raw:
            self.message(msg)
            return
        for key, value in lines(msg):
            self.out.write(f"{key}: {value}\n")
        self.out.flush()
