"""Pachyderm-style glob patterns over absolute paths.

Used by ``glob file`` and by datum enumeration (``pps.datums``). The dialect follows
Pachyderm's ohmyglob library with ``/`` as the separator:

* ``*``      any run of characters other than ``/`` (possibly empty)
* ``?``      exactly one character other than ``/``
* ``[abc]``, ``[a-z]``, ``[!abc]`` / ``[^abc]``  one character of (not of) a class;
  a class never matches ``/``
* ``**``     any run of characters *including* ``/``: ``/**`` matches every path at
  every depth and ``/**test*.txt`` matches ``/test1.txt`` and ``/a/b/anothertest.txt``
* ``(p|q)``  a capture group (alternatives separated by ``|``); groups are numbered
  by their opening parenthesis as in regular expressions, nested groups allowed.
  ``@(p)``, ``?(p)``, ``*(p)``, ``+(p)`` are extglob groups (exactly one, zero or
  one, zero or more, one or more); they capture too.
* ``!(p)``   extglob negation: a run of non-``/`` characters such that ``p``
  followed by the rest of the pattern does not match here (the usual
  regex translation of extglob; ``!(**)`` matches nothing). It counts as a group
  for numbering and captures the text it matched.
* ``{a,b}``  alternation (non-capturing)
* ``\\x``    the character ``x`` literally

Patterns are path-cleaned: the leading ``/`` is optional, a trailing ``/`` is
dropped and runs of ``/`` collapse, so ``*``, ``/*`` and ``/*/`` are the same glob.
Paths passed to :meth:`Glob.match` are absolute (``/a/b``); a trailing ``/`` (how
directories are displayed) is ignored. The root ``/`` has no name, so it is matched
by the pattern ``/`` only (``/*`` and ``/**`` never return the root, as in
Pachyderm's ``glob file``).

Each pattern is translated to one Python regular expression, once: compiled globs
are cached by :func:`compile_glob`. Python's ``re`` backtracks, so a repetition
group whose alternatives hold a star (``*(a*)``) can take exponential time on a
long near-miss; the common forms ``*(*)``, ``+(*)`` and ``*(**)`` are rewritten to
a plain star and are linear. Every other construct is at worst polynomial.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from pfs.errors import InvalidArgument

__all__ = ["Glob", "InvalidGlob", "clean_glob", "compile_glob"]


class InvalidGlob(InvalidArgument):
    """A glob pattern cannot be parsed (unbalanced brackets, trailing escape...)."""

    def __init__(self, pattern: str, problem: str) -> None:
        super().__init__(f'glob "{pattern}" is invalid: {problem}')
        self.pattern = pattern
        self.problem = problem


# --- syntax tree ------------------------------------------------------------------
# A pattern parses into a sequence of nodes. Groups and braces hold alternatives,
# each itself a sequence. Keeping a tree (rather than emitting regex while scanning)
# lets `!(p)` see the regex of everything after it, and lets `may_match_under` look
# at the pattern one path segment at a time.


@dataclass(frozen=True)
class _Lit:
    text: str


@dataclass(frozen=True)
class _Star:
    pass


@dataclass(frozen=True)
class _SuperStar:
    pass


@dataclass(frozen=True)
class _AnyChar:
    pass


@dataclass(frozen=True)
class _Sep:
    pass


@dataclass(frozen=True)
class _Class:
    body: str  # already regex-escaped class body, without brackets
    negated: bool


@dataclass(frozen=True)
class _Group:
    kind: str  # "" (plain), "@", "?", "*", "+", "!"
    alts: tuple[tuple[_Node, ...], ...]


@dataclass(frozen=True)
class _Brace:
    alts: tuple[tuple[_Node, ...], ...]


_Node = _Lit | _Star | _SuperStar | _AnyChar | _Sep | _Class | _Group | _Brace

_EXTGLOB = "@?*+!"


class _Parser:
    """Recursive-descent parser from a cleaned pattern to a node sequence."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0

    def fail(self, problem: str) -> InvalidGlob:
        return InvalidGlob(self.pattern, problem)

    def parse(self) -> tuple[_Node, ...]:
        seq = self._sequence(stops="")
        if self.pos < len(self.pattern):
            ch = self.pattern[self.pos]
            raise self.fail(f'unmatched "{ch}" at offset {self.pos}')
        return seq

    def _sequence(self, stops: str) -> tuple[_Node, ...]:
        """Parse until end of input or an unconsumed char in ``stops``."""
        p = self.pattern
        out: list[_Node] = []
        lit: list[str] = []

        def flush() -> None:
            if lit:
                out.append(_Lit("".join(lit)))
                lit.clear()

        while self.pos < len(p):
            ch = p[self.pos]
            nxt = p[self.pos + 1] if self.pos + 1 < len(p) else ""
            if ch in stops or ch in ")}":
                # A closer that nobody opened is reported by the caller (parse()).
                break
            if ch in _EXTGLOB and nxt == "(":
                flush()
                start = self.pos
                self.pos += 2
                out.append(_Group(ch, self._alternatives("|", ")", start)))
                continue
            if ch == "(":
                flush()
                start = self.pos
                self.pos += 1
                out.append(_Group("", self._alternatives("|", ")", start)))
                continue
            if ch == "{":
                flush()
                start = self.pos
                self.pos += 1
                out.append(_Brace(self._alternatives(",", "}", start)))
                continue
            if ch == "[":
                flush()
                out.append(self._class())
                continue
            if ch == "*":
                flush()
                if nxt == "*":
                    # Any run of stars with two or more is a super-star.
                    while self.pos < len(p) and p[self.pos] == "*":
                        self.pos += 1
                    out.append(_SuperStar())
                else:
                    self.pos += 1
                    out.append(_Star())
                continue
            if ch == "?":
                flush()
                self.pos += 1
                out.append(_AnyChar())
                continue
            if ch == "/":
                flush()
                self.pos += 1
                out.append(_Sep())
                continue
            if ch == "\\":
                if not nxt:
                    raise self.fail("trailing backslash escapes nothing")
                lit.append(nxt)
                self.pos += 2
                continue
            lit.append(ch)
            self.pos += 1
        flush()
        return tuple(out)

    def _alternatives(self, sep: str, close: str, start: int) -> tuple[tuple[_Node, ...], ...]:
        alts: list[tuple[_Node, ...]] = []
        while True:
            alts.append(self._sequence(stops=sep + close))
            if self.pos >= len(self.pattern):
                opener = "{" if close == "}" else "("
                raise self.fail(f'unclosed "{opener}" at offset {start}')
            ch = self.pattern[self.pos]
            self.pos += 1
            if ch == close:
                return tuple(alts)
            if ch != sep:
                raise self.fail(f'unmatched "{ch}" at offset {self.pos - 1}')

    def _class(self) -> _Class:
        p = self.pattern
        start = self.pos
        i = self.pos + 1
        negated = False
        if i < len(p) and p[i] in "!^":
            negated = True
            i += 1
        body: list[str] = []
        first = True
        while True:
            if i >= len(p):
                raise self.fail(f'unclosed "[" at offset {start}')
            ch = p[i]
            if ch == "]" and not first:
                break
            first = False
            if ch == "\\":
                if i + 1 >= len(p):
                    raise self.fail(f'unclosed "[" at offset {start}')
                body.append(re.escape(p[i + 1]))
                i += 2
                continue
            if ch == "-" and body and i + 1 < len(p) and p[i + 1] != "]":
                lo = body[-1].lstrip("\\")
                hi = p[i + 1]
                if len(lo) == 1 and hi < lo:
                    raise self.fail(f'bad range "{lo}-{hi}" in "[" at offset {start}')
                body.append("-")
                i += 1
                continue
            body.append(re.escape(ch) if ch in "\\^[]-" else ch)
            i += 1
        self.pos = i + 1
        return _Class("".join(body), negated)


# --- regex generation -------------------------------------------------------------


def _gen_seq(seq: tuple[_Node, ...], cont: str, cap: bool) -> str:
    """Regex for ``seq`` followed by a continuation whose regex is ``cont``.

    ``cont`` is only needed by ``!(p)``, whose lookahead must see what follows it.
    Lookahead copies are generated with ``cap=False`` so they add no groups and the
    numbering stays "by opening parenthesis" of the user's pattern.
    """
    parts: list[str] = []
    suffix = ""  # non-capturing regex of the nodes after the current one
    for node in reversed(seq):
        parts.append(_gen_node(node, suffix + cont, cap))
        if cap:
            suffix = _gen_node(node, suffix + cont, False) + suffix
        else:
            suffix = parts[-1] + suffix
    return "".join(reversed(parts))


def _gen_node(node: _Node, cont: str, cap: bool) -> str:
    if isinstance(node, _Lit):
        return re.escape(node.text)
    if isinstance(node, _Sep):
        return "/"
    if isinstance(node, _Star):
        return "[^/]*"
    if isinstance(node, _SuperStar):
        return ".*"
    if isinstance(node, _AnyChar):
        return "[^/]"
    if isinstance(node, _Class):
        if node.negated:
            return f"[^/{node.body}]"
        return f"(?!/)[{node.body}]"
    if isinstance(node, _Brace):
        return "(?:" + "|".join(_gen_seq(a, cont, cap) for a in node.alts) + ")"
    # _Group
    if node.kind == "!":
        inner = "|".join(_gen_seq(a, "", False) for a in node.alts)
        body = f"(?!(?:{inner}){cont}\\Z)[^/]*?"
        return f"({body})" if cap else f"(?:{body})"
    if node.kind in "*+" and not any(_has_group(n) for alt in node.alts for n in alt):
        # A repeated star nests quantifiers (`(?:[^/]*)*`), which backtracks
        # exponentially on a near-miss (`*(*).go` vs 24 "a"s took 17 s). Repeating a
        # set that contains a bare `*` (`**`) matches the same as `*` (`**`) alone, so
        # emit that instead; numbering is unaffected as the alternatives hold no groups.
        if any(alt == (_SuperStar(),) for alt in node.alts):
            return "(.*)" if cap else ".*"
        if any(alt == (_Star(),) for alt in node.alts) and not any(
            _may_span(n) for alt in node.alts for n in alt
        ):
            return "([^/]*)" if cap else "[^/]*"
    inner = "|".join(_gen_seq(a, cont, cap) for a in node.alts)
    quant = {"": "", "@": "", "?": "?", "*": "*", "+": "+"}[node.kind]
    if quant:
        inner = f"(?:{inner}){quant}"
    return f"({inner})" if cap else f"(?:{inner})"


def _has_group(node: _Node) -> bool:
    """True if ``node`` is or contains a group (which would hold a group number)."""
    if isinstance(node, _Group):
        return True
    if isinstance(node, _Brace):
        return any(_has_group(n) for alt in node.alts for n in alt)
    return False


def _split_segments(seq: tuple[_Node, ...]) -> list[tuple[_Node, ...]]:
    """Split a top-level node sequence at its separators."""
    segs: list[list[_Node]] = [[]]
    for node in seq:
        if isinstance(node, _Sep):
            segs.append([])
        else:
            segs[-1].append(node)
    return [tuple(s) for s in segs]


def _may_span(node: _Node) -> bool:
    """True if ``node`` could match text containing ``/`` (or is a negation, whose
    lookahead reaches past its own segment)."""
    if isinstance(node, (_Sep, _SuperStar)):
        return True
    if isinstance(node, _Lit):
        return "/" in node.text
    if isinstance(node, _Group) and node.kind == "!":
        return True
    if isinstance(node, (_Group, _Brace)):
        return any(_may_span(n) for alt in node.alts for n in alt)
    return False


def _segment_is_simple(seg: tuple[_Node, ...]) -> bool:
    """True if the segment can only ever match exactly one path component."""
    return not any(_may_span(n) for n in seg)


# --- public API -------------------------------------------------------------------


def clean_glob(pattern: str) -> str:
    """Path-clean a glob: make it absolute, collapse ``//``, drop a trailing ``/``."""
    p = "/" + pattern.lstrip("/")
    p = re.sub(r"/{2,}", "/", p)
    if len(p) > 1 and p.endswith("/") and not p.endswith("\\/"):
        p = p[:-1]
    return p


@dataclass(frozen=True)
class Glob:
    """A compiled glob. Build with :func:`compile_glob`.

    Attributes:
        pattern: the cleaned pattern (``/`` prefixed, no trailing ``/``).
        regex: the equivalent anchored regular expression.
        groups: the number of capture groups.
    """

    pattern: str
    regex: re.Pattern[str]
    groups: int
    # One compiled regex per leading path segment that can only match a single path
    # component; the list stops at the first segment that could span several
    # components (`**`, `/` inside a group, negation). None = root-only pattern.
    _prefix_segments: tuple[re.Pattern[str], ...] = field(repr=False, default=())
    _num_segments: int = field(repr=False, default=0)
    _exact_depth: bool = field(repr=False, default=True)

    def match(self, path: str) -> tuple[str, ...] | None:
        """Match a whole absolute path; return its capture groups or None.

        Groups that did not take part in the match are returned as ``""``.
        """
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        if path == "/" or path == "":
            return () if self.pattern == "/" else None
        if self.pattern == "/":
            return None
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        return tuple(g or "" for g in m.groups())

    def matches(self, path: str) -> bool:
        """True if :meth:`match` would return a tuple."""
        return self.match(path) is not None

    def may_match_under(self, dir_path: str) -> bool:
        """Could any path strictly below directory ``dir_path`` match?

        Conservative: False is returned only when no such path can match, so a tree
        walk may prune ``dir_path``; True may be returned for a directory under which
        nothing matches.
        """
        if self.pattern == "/":
            return False  # only the root itself matches
        parts = [c for c in dir_path.split("/") if c]
        for i, comp in enumerate(parts):
            if i >= len(self._prefix_segments):
                # Reached a segment that may span components: give up, stay safe.
                return not self._exact_depth or i < self._num_segments
            if self._prefix_segments[i].fullmatch(comp) is None:
                return False
        if len(parts) < len(self._prefix_segments):
            return True
        # All leading simple segments matched; something must remain below.
        return not self._exact_depth or len(parts) < self._num_segments

    def __hash__(self) -> int:
        return hash(self.pattern)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Glob) and other.pattern == self.pattern


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> Glob:
    """Compile (and cache) a Pachyderm glob.

    Raises:
        InvalidGlob: (an :class:`~pfs.errors.InvalidArgument`) if the pattern has
            unbalanced brackets, parentheses or braces, a bad range, or ends in ``\\``.
    """
    cleaned = clean_glob(pattern)
    seq = _Parser(cleaned).parse()
    body = _gen_seq(seq, "", True)
    try:
        regex = re.compile(body, re.DOTALL)
    except re.error as e:  # pragma: no cover - the parser should prevent this
        raise InvalidGlob(cleaned, str(e)) from e

    # The first segment is before the leading "/", hence empty: drop it.
    segs = _split_segments(seq)[1:]
    prefix: list[re.Pattern[str]] = []
    exact = True
    for seg in segs:
        if not _segment_is_simple(seg):
            exact = False
            break
        prefix.append(re.compile(_gen_seq(seg, "", False), re.DOTALL))
    return Glob(
        pattern=cleaned,
        regex=regex,
        groups=regex.groups,
        _prefix_segments=tuple(prefix),
        _num_segments=len(segs),
        _exact_depth=exact,
    )
