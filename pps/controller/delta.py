"""Which datums a change of the input commits touches, without enumerating
the others.

A job's datums are a function of its inputs' glob matches. Between the
commits the last successful job planned at and the current ones, PFS's
Merkle trees give the changed paths in time proportional to the change
(:meth:`pfs.tree.Tree.diff` skips equal subtrees); a glob match changed
when it, or anything under it, did. From the changed matches of each leaf,
:func:`input_delta` derives, through the input tree:

* ``old``: the identities of the datums that may have changed or vanished
  (their IDs need only input name, repo, branch and path: no old commit is
  read);
* ``new``: the current rows of every datum that may have changed or appeared.

Every other datum is as it was: same ID, same hash, so it is skipped
without being looked at. Per input kind:

* **pfs/cron**: the changed matches themselves.
* **union**: the children's deltas together.
* **cross**: the changed side's rows crossed with every other side's rows
  (read in full; a change on two sides at once falls back to full planning).
* **join**/**group** (of pfs inputs): the keys of the changed matches; for
  each, the datum(s) of that key before and after. The matches of each key
  come from a table per leaf kept by the master between jobs
  (:class:`KeyTables`), built once from a full glob when it is missing.

:func:`input_delta` returns None where this does not apply (the caller plans
in full): a group over a join, a union whose children repeat an input name,
a cross changed on more than one side.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import blake3

from pps.datums import (
    DatumInput,
    InputSource,
    LeafMaker,
    Match,
    _lp,
    _rows,
    join_key_rows,
    leaf_of,
)
from pps.spec import Input

#: A datum's identity: (input name, repo, branch, path) of each input, in order.
Ident = tuple[tuple[str, str, str, str], ...]
Row = tuple[DatumInput, ...]


class DiffSource(InputSource, Protocol):
    def diff(self, repo: str, old: str, new: str, pattern: str
             ) -> tuple[list[str], list[Match]]:
        """Glob matches of ``pattern`` that differ between commits ``old`` and
        ``new`` of ``repo``: paths matched in ``old`` (changed or removed) and
        the matches in ``new`` (changed or added)."""
        ...


def ident_id(ident: Ident) -> str:
    """The datum ID of an identity (:func:`pps.datums.datum_id`'s formula)."""
    h = blake3.blake3()
    for name, repo, branch, path in ident:
        h.update(_lp(name.encode()))
        h.update(_lp(repo.encode()))
        h.update(_lp(branch.encode()))
        h.update(_lp(path.encode()))
    return h.hexdigest()


def ident_of(row: Row) -> Ident:
    return tuple((i.name, i.repo, i.branch, i.path) for i in row)


@dataclass
class Delta:
    old: list[Ident] = field(default_factory=list)
    new: list[Row] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.old or self.new)


@dataclass
class _LeafChange:
    maker: LeafMaker
    old_paths: list[str]
    new: list[DatumInput]


@dataclass
class KeyTable:
    """One leaf's matches by join or group key, at one commit."""

    commit: str
    by_key: dict[str, list[DatumInput]]


class KeyTables:
    """Per-leaf key tables the master keeps between jobs (memory: one entry
    per match of each join/group input). Keyed by what determines a table:
    pipeline version's leaf name, repo, glob and key templates."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, ...], KeyTable] = {}


class _Planner:
    def __init__(self, source: DiffSource, base: Mapping[str, str], commits: Mapping[str, str],
                 tables: KeyTables) -> None:
        self.source = source
        self.base = base
        self.commits = commits
        self.tables = tables

    def leaf(self, inp: Input) -> _LeafChange:
        leaf = leaf_of(inp)
        old, new = self.base[leaf.name], self.commits[leaf.name]
        maker = LeafMaker(inp, new)
        if old == new:
            return _LeafChange(maker, [], [])
        old_paths, matches = self.source.diff(leaf.repo, old, new, leaf.glob)
        return _LeafChange(maker, [_strip(p) for p in old_paths],
                           [maker.make(m) for m in matches])

    def delta(self, inp: Input, path: str) -> Delta | None:
        if inp.pfs is not None or inp.cron is not None:
            lc = self.leaf(inp)
            leaf = lc.maker.leaf
            return Delta([((leaf.name, leaf.repo, leaf.branch, p),) for p in lc.old_paths],
                         [(d,) for d in lc.new])
        if inp.union:
            names = [leaf.name for leaf in inp.leaves()]
            if len(names) != len(set(names)):
                return None
            out = Delta()
            seen: set[Ident] = set()
            for n, c in enumerate(inp.union):
                d = self.delta(c, f"{path}.union[{n}]")
                if d is None:
                    return None
                out.old.extend(d.old)
                for row in d.new:
                    ident = ident_of(row)
                    if ident not in seen:
                        seen.add(ident)
                        out.new.append(row)
            return out
        if inp.cross:
            return self.cross(inp.cross, path)
        if inp.join:
            return self.keyed(inp.join, path, join=True)
        return self.keyed(inp.group, path, join=False)

    def cross(self, children: Sequence[Input], path: str) -> Delta | None:
        deltas = []
        for n, c in enumerate(children):
            d = self.delta(c, f"{path}.cross[{n}]")
            if d is None:
                return None
            deltas.append(d)
        changed = [n for n, d in enumerate(deltas) if d]
        if not changed:
            return Delta()
        if len(changed) > 1:
            return None
        k = changed[0]
        sides = [list(_rows(c, self.commits, self.source, f"{path}.cross[{n}]"))
                 if n != k else [] for n, c in enumerate(children)]
        old_sides: list[Sequence[Ident]] = [[ident_of(r) for r in s] for s in sides]
        old_sides[k] = deltas[k].old
        new_sides: list[Sequence[Row]] = list(sides)
        new_sides[k] = deltas[k].new
        return Delta([tuple(itertools.chain.from_iterable(c))
                      for c in itertools.product(*old_sides)],
                     [tuple(itertools.chain.from_iterable(c))
                      for c in itertools.product(*new_sides)])

    def keyed(self, children: Sequence[Input], path: str, join: bool) -> Delta | None:
        if any(c.pfs is None for c in children):
            return None  # a group over a join, or a spec the parser refuses
        changes = [self.leaf(c) for c in children]
        if not any(lc.old_paths or lc.new for lc in changes):
            return Delta()
        old_tables: list[dict[str, list[DatumInput]]] = []
        new_tables: list[dict[str, list[DatumInput]]] = []
        affected: set[str] = set()
        for c, lc in zip(children, changes, strict=True):
            table = self.table(c, join)
            pick = _join_key if join else _group_key
            old_t: dict[str, list[DatumInput]] = {}
            touched: set[str] = set()
            for p in lc.old_paths:
                touched.add(pick(lc.maker.keys(p)))
            for d in lc.new:
                touched.add(pick((d.join_on, d.group_by)))
            for key in touched:
                old_t[key] = list(table.by_key.get(key, ()))
            gone = set(lc.old_paths)
            for key in touched:
                kept = [d for d in table.by_key.get(key, ()) if d.path not in gone]
                table.by_key[key] = kept
            for d in lc.new:
                lst = table.by_key[pick((d.join_on, d.group_by))]
                bisect.insort(lst, d, key=_path)
            for key in touched:
                if not table.by_key[key]:
                    del table.by_key[key]
            table.commit = lc.maker.commit
            affected |= touched
            old_tables.append(old_t)
            new_tables.append(table.by_key)
        out = Delta()
        if join:
            outer = [bool(c.pfs and c.pfs.outer_join) for c in children]
            # Old tables hold only the touched keys: for the others the
            # old and new lists are the same.
            olds = [_Overlay(o, n) for o, n in zip(old_tables, new_tables, strict=True)]
            for key in sorted(affected):
                out.old.extend(ident_of(r) for r in join_key_rows(olds, outer, key))
                out.new.extend(join_key_rows(new_tables, outer, key))
            return out
        rank = {c.pfs.name: n for n, c in enumerate(children) if c.pfs is not None}
        for key in sorted(affected):
            before = _group_row(rank, (_Overlay(o, n).get(key) or ()
                                       for o, n in zip(old_tables, new_tables, strict=True)))
            after = _group_row(rank, (t.get(key) or () for t in new_tables))
            if before:
                out.old.append(ident_of(before))
            if after:
                out.new.append(after)
        return out

    def table(self, inp: Input, join: bool) -> KeyTable:
        """The leaf's key table at its base commit (built if not kept)."""
        leaf = leaf_of(inp)
        assert inp.pfs is not None
        tkey = (leaf.name, leaf.repo, leaf.branch, leaf.glob, inp.pfs.join_on,
                inp.pfs.group_by, "join" if join else "group")
        base = self.base[leaf.name]
        t = self.tables.tables.get(tkey)
        if t is None or t.commit != base:
            maker = LeafMaker(inp, base)
            pick = _join_key if join else _group_key
            by_key: dict[str, list[DatumInput]] = {}
            for m in self.source.glob(leaf.repo, base, leaf.glob):
                d = maker.make(m)
                by_key.setdefault(pick((d.join_on, d.group_by)), []).append(d)
            t = KeyTable(base, by_key)
            self.tables.tables[tkey] = t
        return t


class _Overlay(Mapping[str, list[DatumInput]]):
    """Old lists where a key was touched, else the (unchanged) new ones."""

    def __init__(self, old: Mapping[str, list[DatumInput]],
                 new: Mapping[str, list[DatumInput]]) -> None:
        self.old, self.new = old, new

    def __getitem__(self, key: str) -> list[DatumInput]:
        if key in self.old:
            return self.old[key]
        return self.new[key]

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def get(self, key: str, default: object = None) -> list[DatumInput] | None:  # type: ignore[override]
        if key in self.old:
            return self.old[key] or None
        return self.new.get(key)


def _path(d: DatumInput) -> str:
    return d.path


def _join_key(k: tuple[str, str]) -> str:
    return k[0]


def _group_key(k: tuple[str, str]) -> str:
    return k[1]


def _strip(p: str) -> str:
    return p[:-1] if len(p) > 1 and p.endswith("/") else p


def _group_row(rank: Mapping[str, int], lists: Iterable[Iterable[DatumInput]]) -> Row:
    files = [d for lst in lists for d in lst]
    return tuple(sorted(files, key=lambda d: (rank.get(d.name, 0), d.path)))


def input_delta(inp: Input, base: Mapping[str, str], commits: Mapping[str, str],
                source: DiffSource, tables: KeyTables) -> Delta | None:
    """The datums touched between input commits ``base`` and ``commits``
    (input name -> commit ID), or None when the input's shape needs a full
    plan (module docstring)."""
    return _Planner(source, base, commits, tables).delta(inp, "input")


__all__ = ["Delta", "DiffSource", "Ident", "KeyTables", "Row", "ident_id", "ident_of",
           "input_delta"]
