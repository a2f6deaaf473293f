"""Datum enumeration, datum IDs and datum hashes (reference 2.2-2.4).

A job splits its pipeline's input into *datums*. :func:`enumerate_datums` walks the
input tree of a :class:`~pps.spec.PipelineSpec`:

* **pfs** -- the glob is evaluated over the input commit; every match, file or
  directory, is one datum with one input.
* **cron** -- like pfs with glob ``/*`` on the tick repo's ``master`` branch.
* **union** -- the datums of every child, one after another (each has the inputs of
  one child). Datums with the same ID (the same files under the same input name)
  are produced once.
* **cross** -- the cartesian product of the children's datums; an empty child makes
  the whole cross empty.
* **join** -- every pfs child's matches are keyed by ``join_on`` (the glob's capture
  groups substituted into the template, e.g. ``$2$1``). For each key present in
  *every* child, the cross product of that key's matches is one datum each. For a
  key missing from some child, children with ``outer_join`` that do have it still
  produce the cross product of their own matches.
* **group** -- every file of every child (pfs inputs, or the datums of a join) is
  keyed by its own input's ``group_by``; each key is one datum holding all of its
  files (a file reached twice through a join is listed once).

Order is deterministic: pfs/cron matches by path; union in child order; cross with
the first child as the outermost loop; join and group by key (string order), and
within a key in child order then path order. The inputs of one datum are in child
order (the order of the spec).

IDs and hashes use BLAKE3, written out as 64 hex characters (the length of
Pachyderm's SHA-256 datum IDs):

* **datum ID** = BLAKE3 over, for every input of the datum, its input name, repo,
  branch and path, each prefixed by its length (8 bytes, little endian). It does not
  depend on the commit, so the same files get the same ID in every job.
* **datum hash** = BLAKE3 over the ID, the content hash of every input that is not
  a ``reference`` input (length-prefixed) and the pipeline's salt. A datum whose hash
  equals the one of the last successful job can be skipped.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import blake3

from pfs.glob import compile_glob
from pps.errors import InvalidSpec, MissingInputCommit
from pps.spec import CronInput, Input, PFSInput

__all__ = [
    "Datum",
    "DatumInput",
    "InputSource",
    "LeafMaker",
    "Match",
    "datum_id",
    "enumerate_datums",
    "expand_key",
    "join_key_rows",
    "leaf_of",
]


@dataclass(frozen=True)
class Match:
    """One glob match in an input commit: a file, or a directory (its whole subtree).

    ``hash`` is the content hash of the file, or the Merkle hash of the directory.
    """

    path: str
    is_dir: bool
    hash: bytes
    size: int


class InputSource(Protocol):
    """Where datum enumeration reads input commits from (PFS, or a test double)."""

    def glob(self, repo: str, commit: str, pattern: str) -> Iterable[Match]:
        """Every file *and* directory of ``repo@commit`` matching the glob.

        Sorted by path; paths absolute (``/a/b``), with or without a trailing ``/``
        for directories. The root ``/`` is returned only for the pattern ``/``.
        """
        ...


@dataclass(frozen=True)
class DatumInput:
    """One input's part of a datum: a file or directory of one input commit.

    ``join_on`` / ``group_by`` are the keys computed for this path (exposed to user
    code as ``PACH_DATUM_<name>_JOIN_ON`` / ``_GROUP_BY``), empty when unused.
    """

    name: str
    repo: str
    branch: str
    commit: str
    path: str
    is_dir: bool
    hash: bytes
    size: int
    join_on: str = ""
    group_by: str = ""
    reference: bool = False
    empty_files: bool = False
    lazy: bool = False


def _lp(data: bytes) -> bytes:
    """Length-prefix ``data`` so concatenations cannot collide ("ab"+"c" vs "a"+"bc")."""
    return len(data).to_bytes(8, "little") + data


def datum_id(inputs: Sequence[DatumInput]) -> str:
    """The stable ID of a datum made of ``inputs`` (see the module docstring)."""
    h = blake3.blake3()
    for i in inputs:
        h.update(_lp(i.name.encode()))
        h.update(_lp(i.repo.encode()))
        h.update(_lp(i.branch.encode()))
        h.update(_lp(i.path.encode()))
    return h.hexdigest()


@dataclass(frozen=True)
class Datum:
    """A unit of work: the user code runs once with these inputs under ``/pfs``."""

    inputs: tuple[DatumInput, ...]
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            # Frozen: computing the ID here keeps `Datum(inputs)` the one way to build it.
            object.__setattr__(self, "id", datum_id(self.inputs))

    def hash(self, salt: str) -> str:
        """Content hash deciding whether the datum must run again.

        Changes when a non-``reference`` input's content changes or the salt does.
        """
        h = blake3.blake3()
        h.update(_lp(self.id.encode()))
        for i in self.inputs:
            if not i.reference:
                h.update(_lp(i.hash))
        h.update(_lp(salt.encode()))
        return h.hexdigest()

    @property
    def size(self) -> int:
        """Total bytes of the datum's inputs."""
        return sum(i.size for i in self.inputs)


# --- join/group keys ---------------------------------------------------------------

_KEY_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+)|(\$))")


def expand_key(template: str, path: str, groups: Sequence[str]) -> str:
    """Substitute capture groups into a ``join_on``/``group_by`` template.

    Go ``regexp.Expand`` rules, as Pachyderm uses them: ``$1`` / ``${1}`` is a group,
    ``$0`` the whole path, ``$$`` a literal ``$``; a ``$name`` takes the longest run
    of letters, digits and ``_`` (so ``$1x`` names group "1x", which does not exist
    and expands to nothing -- write ``${1}x``); unknown groups expand to nothing.
    """
    if "$" not in template:
        return template

    def sub(m: re.Match[str]) -> str:
        if m.group(3):
            return "$"
        name = m.group(1) or m.group(2)
        if not name.isdigit():
            return ""
        n = int(name)
        if n == 0:
            return path
        return groups[n - 1] if n <= len(groups) else ""

    return _KEY_RE.sub(sub, template)


# --- enumeration -------------------------------------------------------------------

_Row = tuple[DatumInput, ...]


def enumerate_datums(
    input_spec: Input, commits: Mapping[str, str], source: InputSource
) -> Iterator[Datum]:
    """Every datum of ``input_spec``, in the documented deterministic order.

    Args:
        input_spec: the pipeline's ``input`` tree.
        commits: input name -> commit ID of that input for this job (for a cron
            input, its name -> the tick repo's commit).
        source: reads glob matches of input commits.

    Raises:
        MissingInputCommit: an input of the tree has no entry in ``commits``.
        InvalidSpec: a join child is not a pfs input, or a group child is not a pfs
            or join input (the spec parser rejects these already).
    """
    for row in _rows(input_spec, commits, source, "input"):
        yield Datum(row)


def _rows(inp: Input, commits: Mapping[str, str], source: InputSource, path: str) -> Iterable[_Row]:
    if inp.pfs is not None or inp.cron is not None:
        return ((i,) for i in _leaf(inp, commits, source))
    if inp.union:
        return _union(inp.union, commits, source, path)
    if inp.cross:
        # Children are materialised: a product needs to revisit every side but the first.
        sides = [
            list(_rows(c, commits, source, f"{path}.cross[{n}]")) for n, c in enumerate(inp.cross)
        ]
        return (tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*sides))
    if inp.join:
        return _join(inp.join, commits, source, path)
    return _group(inp.group, commits, source, path)


def leaf_of(inp: Input) -> PFSInput | CronInput:
    """The pfs or cron input of a leaf node."""
    if inp.pfs is not None:
        return inp.pfs
    assert inp.cron is not None
    return inp.cron


class LeafMaker:
    """Turns glob matches of one leaf input at one commit into datum inputs."""

    def __init__(self, inp: Input, commit: str) -> None:
        leaf = self.leaf = leaf_of(inp)
        if inp.pfs is not None:
            self.join_t, self.group_t = inp.pfs.join_on, inp.pfs.group_by
            self.flags = (inp.pfs.reference, inp.pfs.empty_files, inp.pfs.lazy)
        else:
            self.join_t = self.group_t = ""
            self.flags = (False, False, False)
        self.commit = commit
        self.glob = compile_glob(leaf.glob)
        self.need_groups = "$" in self.join_t or "$" in self.group_t

    def keys(self, path: str) -> tuple[str, str]:
        """``(join_on, group_by)`` of a matched path (no trailing ``/``)."""
        if not self.need_groups:
            return self.join_t, self.group_t
        groups = self.glob.match(path) or ()
        return expand_key(self.join_t, path, groups), expand_key(self.group_t, path, groups)

    def make(self, m: Match) -> DatumInput:
        p = m.path
        if len(p) > 1 and p.endswith("/"):
            p = p[:-1]  # keys and IDs see directories without their trailing "/"
        join_on, group_by = self.keys(p)
        leaf = self.leaf
        return DatumInput(name=leaf.name, repo=leaf.repo, branch=leaf.branch,
                          commit=self.commit, path=p, is_dir=m.is_dir, hash=m.hash,
                          size=m.size, join_on=join_on, group_by=group_by,
                          reference=self.flags[0], empty_files=self.flags[1],
                          lazy=self.flags[2])


def _leaf(inp: Input, commits: Mapping[str, str], source: InputSource) -> Iterator[DatumInput]:
    leaf = leaf_of(inp)
    commit = commits.get(leaf.name)
    if commit is None:
        raise MissingInputCommit(leaf.name)
    maker = LeafMaker(inp, commit)
    for m in source.glob(leaf.repo, commit, leaf.glob):
        yield maker.make(m)


def _union(
    children: Sequence[Input], commits: Mapping[str, str], source: InputSource, path: str
) -> Iterator[_Row]:
    seen: set[tuple[tuple[str, str, str, str], ...]] = set()
    for n, c in enumerate(children):
        for row in _rows(c, commits, source, f"{path}.union[{n}]"):
            # Same identity fields => same datum ID; produce it once.
            ident = tuple((i.name, i.repo, i.branch, i.path) for i in row)
            if ident in seen:
                continue
            seen.add(ident)
            yield row


def _join(
    children: Sequence[Input], commits: Mapping[str, str], source: InputSource, path: str
) -> Iterator[_Row]:
    tables: list[dict[str, list[DatumInput]]] = []
    outer: list[bool] = []
    for n, c in enumerate(children):
        if c.pfs is None:
            raise InvalidSpec(f"{path}.join[{n}]", f'"{path}.join[{n}]" must be a pfs input')
        table: dict[str, list[DatumInput]] = {}
        for di in _leaf(c, commits, source):
            table.setdefault(di.join_on, []).append(di)
        tables.append(table)
        outer.append(c.pfs.outer_join)
    keys = sorted(set().union(*(t.keys() for t in tables)))
    for key in keys:
        yield from join_key_rows(tables, outer, key)


def join_key_rows(tables: Sequence[Mapping[str, Sequence[DatumInput]]], outer: Sequence[bool],
                  key: str) -> Iterator[_Row]:
    """The datums of one join key: the product of every child's inputs with
    that key, or of the ``outer_join`` children's when some child lacks it."""
    present = [n for n, t in enumerate(tables) if t.get(key)]
    if len(present) < len(tables):
        present = [n for n in present if outer[n]]
        if not present:
            return
    yield from itertools.product(*(tables[n][key] for n in present))


def _group(
    children: Sequence[Input], commits: Mapping[str, str], source: InputSource, path: str
) -> Iterator[_Row]:
    groups: dict[str, list[DatumInput]] = {}
    seen: set[tuple[str, str, str]] = set()
    for n, c in enumerate(children):
        cpath = f"{path}.group[{n}]"
        if c.pfs is not None:
            rows: Iterable[_Row] = ((i,) for i in _leaf(c, commits, source))
        elif c.join:
            rows = _join(c.join, commits, source, cpath)
        else:
            raise InvalidSpec(cpath, f'"{cpath}" must be a pfs or join input')
        for row in rows:
            for di in row:
                ident = (di.name, di.repo, di.path)
                if ident in seen:
                    continue
                seen.add(ident)
                groups.setdefault(di.group_by, []).append(di)
    # A join yields files in join-key order: restore the documented child-then-path
    # order within each group. Leaf names are unique inside a group (spec rule).
    rank = {leaf.name: n for n, leaf in enumerate(Input(group=tuple(children)).leaves())}
    for key in sorted(groups):
        yield tuple(sorted(groups[key], key=lambda di: (rank.get(di.name, 0), di.path)))
