"""Planning from the difference of input commits gives the same plan as
planning in full, while looking only at what changed.

Every case: a base job planned in full at the first commits and taken as
successful (its index written through :class:`pps.datum_index.DatumIndex`),
then random changes to the inputs; the plan from the difference must equal
the plan from enumerating everything against the same base index: the same
datums to run (IDs and hashes), the same removed datums, the same outputs to
delete and the same total. A source that counts full globs shows the
difference path did not enumerate the inputs.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from pfs.api import PFS
from pfs.blobs import BlobStore
from pfs.metadata import MemoryMetadataStore
from pfs.objects import MemoryObjectStore
from pps import keys
from pps.controller.delta import KeyTables
from pps.controller.planner import Base, PFSSource, plan_job
from pps.datum_index import DatumIndex
from pps.datums import Match
from pps.records import DatumIndexEntry, Plan
from pps.spec import spec_from_dict


class CountingSource(PFSSource):
    def __init__(self, pfs: PFS) -> None:
        super().__init__(pfs)
        self.globs = 0

    def glob(self, repo: str, commit: str, pattern: str) -> Iterator[Match]:
        self.globs += 1
        return super().glob(repo, commit, pattern)


def _spec(inp: dict[str, Any], **extra: Any) -> Any:
    return spec_from_dict({"pipeline": {"name": "p"}, "transform": {"cmd": ["true"]},
                           "input": inp, **extra})


def _pfs(repo: str, glob: str = "/*", **kw: Any) -> dict[str, Any]:
    return {"pfs": {"repo": repo, "glob": glob, **kw}}


class World:
    def __init__(self, repos: tuple[str, ...]) -> None:
        self.objects = MemoryObjectStore()
        self.pfs = PFS(MemoryMetadataStore(), BlobStore(self.objects))
        for r in repos:
            self.pfs.create_repo(r)
        self.rng = random.Random(7)

    def put(self, repo: str, files: dict[str, bytes], deletes: tuple[str, ...] = ()) -> str:
        with self.pfs.modify_file(repo, "master") as w:
            for p in deletes:
                w.delete_file(p)
            for p, data in files.items():
                w.put_file(p, [data])
        return self.pfs.inspect_commit(repo, "master").id

    def paths(self, repo: str) -> list[str]:
        c = self.pfs.inspect_commit(repo, "master").id
        return [f.path for f in self.pfs.commit_tree(repo, c).files("/")]

    def head(self, repo: str) -> str:
        return self.pfs.inspect_commit(repo, "master").id

    def mutate(self, repo: str, make_path: Any, n: int = 3) -> None:
        have = self.paths(repo)
        changes: dict[str, bytes] = {}
        deletes: list[str] = []
        for _ in range(n):
            what = self.rng.random()
            if what < 0.4 and have:
                changes[self.rng.choice(have)] = f"v{self.rng.random()}".encode()
            elif what < 0.7 and have:
                p = self.rng.choice(have)
                if p not in changes:
                    deletes.append(p)
            else:
                changes[make_path(self.rng.randrange(10_000))] = b"new"
        self.put(repo, changes, tuple(dict.fromkeys(deletes)))


def _succeed(world: World, plan: Plan, base: Base | None, job: str) -> Base:
    """Take ``plan``'s job as successful: every datum ran and wrote one output."""
    di = DatumIndex(world.objects, "p")
    puts = [DatumIndexEntry(d.id, d.hash, "success", job, (f"/{d.id}",),
                            tuple(tuple(f) for f in d.files())) for d in plan.process]
    m = di.write(base.manifest if base else None, puts, plan.removed, plan.commits,
                 plan.fingerprint)
    di.put_manifest(job, m)
    return Base(job, di, m)


def _key(plan: Plan) -> tuple[Any, ...]:
    return (sorted((d.id, d.hash) for d in plan.process), sorted(plan.removed),
            sorted(set(plan.delete)), plan.data_total)


def _commits(world: World, spec: Any) -> dict[str, str]:
    return {leaf.name: world.head(leaf.repo) for leaf in spec.input.leaves()}


CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "pfs": (_pfs("a"), {"a": lambda i: f"/f{i}"}),
    "pfs-deep": (_pfs("a", "/*/*"), {"a": lambda i: f"/d{i % 7}/f{i}"}),
    "pfs-dirs": (_pfs("a", "/*"), {"a": lambda i: f"/d{i % 9}/f{i}"}),
    "union": ({"union": [_pfs("a"), _pfs("b")]},
              {"a": lambda i: f"/f{i}", "b": lambda i: f"/g{i}"}),
    "cross": ({"cross": [_pfs("a"), _pfs("b")]}, {"a": lambda i: f"/f{i}"}),
    "join": ({"join": [_pfs("a", "/(*)-*", join_on="$1"), _pfs("b", "/(*)-*", join_on="$1")]},
             {"a": lambda i: f"/k{i % 13}-{i}", "b": lambda i: f"/k{i % 17}-{i}"}),
    "outer-join": ({"join": [_pfs("a", "/(*)-*", join_on="$1", outer_join=True),
                             _pfs("b", "/(*)-*", join_on="$1")]},
                   {"a": lambda i: f"/k{i % 13}-{i}", "b": lambda i: f"/k{i % 17}-{i}"}),
    "group": ({"group": [_pfs("a", "/(*)-*", group_by="$1"), _pfs("b", "/(*)-*", group_by="$1")]},
              {"a": lambda i: f"/k{i % 5}-{i}", "b": lambda i: f"/k{i % 7}-{i}"}),
    "cross-of-union": ({"cross": [{"union": [_pfs("a"), _pfs("b")]}, _pfs("c")]},
                       {"a": lambda i: f"/f{i}"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_from_the_difference_equals_the_full_plan(case: str) -> None:
    inp, mutators = CASES[case]
    spec = _spec(inp)
    repos = tuple(sorted({leaf.repo for leaf in spec.input.leaves()}))
    world = World(repos)
    for n, r in enumerate(repos):
        make = mutators.get(r, lambda i, r=r: f"/{r}{i}")
        world.put(r, {make(i): f"{r}{i}".encode() for i in range(30 + 5 * n)})
    plan = plan_job(spec, "salt", _commits(world, spec), PFSSource(world.pfs), None)
    base = _succeed(world, plan, None, "j0")
    tables = KeyTables()
    for step in range(6):
        for r, make in mutators.items():
            if step % len(mutators) == list(mutators).index(r) or case.startswith("union"):
                world.mutate(r, make)
        commits = _commits(world, spec)
        src = CountingSource(world.pfs)
        fast = plan_job(spec, "salt", commits, src, base, tables)
        full = plan_job(spec, "salt", commits, PFSSource(world.pfs), dict(
            (e.id, e) for e in base.index.entries(base.manifest)))
        assert _key(fast) == _key(full), f"{case} step {step}"
        assert fast.base == base.job
        if case.startswith("cross"):
            # The changed side is crossed with the other sides, read in full.
            assert src.globs <= 2, f"{case} step {step}: {src.globs} full globs"
        elif case in ("pfs", "pfs-deep", "pfs-dirs", "union") or step > 0:
            # Nothing enumerated (join/group build their key tables once).
            assert src.globs == 0, f"{case} step {step}: {src.globs} full globs"
        base = _succeed(world, fast, base, f"j{step + 1}")
        assert base.manifest.count == fast.data_total


def test_a_one_file_change_touches_one_datum_and_one_shard() -> None:
    world = World(("a",))
    world.put("a", {f"/f{i:05d}": b"x" for i in range(5000)})
    spec = _spec(_pfs("a"))
    plan = plan_job(spec, "", _commits(world, spec), PFSSource(world.pfs), None)
    base = _succeed(world, plan, None, "j0")
    shards_before = dict(base.manifest.shards)
    world.put("a", {"/f00042": b"changed"})
    src = CountingSource(world.pfs)
    plan = plan_job(spec, "", _commits(world, spec), src, base)
    assert len(plan.process) == 1 and plan.process[0].files()[0].path == "/f00042"
    assert plan.data_total == 5000 and not plan.skipped and src.globs == 0
    after = _succeed(world, plan, base, "j1")
    changed = [p for p in after.manifest.shards if after.manifest.shards[p] != shards_before[p]]
    assert after.manifest.chars == 1  # 5,000 datums: 16 shards
    assert changed == [plan.process[0].id[:1]]


def test_shard_width_follows_the_index_size_and_grows_with_it() -> None:
    di = DatumIndex(MemoryObjectStore(), "p")

    def entries(lo: int, hi: int) -> list[DatumIndexEntry]:
        return [DatumIndexEntry(f"{i * 2654435761 % 16**12:012x}{i:052x}", "h", "success", "j",
                                (), ()) for i in range(lo, hi)]

    small = di.write(None, entries(0, 100), (), {}, "")
    assert small.chars == 1 and len(small.shards) <= 16
    # Past 16 x SHARD_FILL datums the index is written again with 2 characters.
    grown = di.write(small, entries(100, 9000), (), {}, "")
    assert grown.chars == 2 and 16 < len(grown.shards) <= 256 and grown.count == 9000
    everything = entries(0, 9000)
    assert di.lookup(grown, [e.id for e in everything[::97]]) == {
        e.id: e for e in everything[::97]}
    assert sorted(e.id for e in di.entries(grown)) == sorted(e.id for e in everything)


def test_an_index_written_before_widths_were_recorded_reads_as_3_characters(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pps.datum_index as index_module

    di = DatumIndex(MemoryObjectStore(), "p")
    everything = [DatumIndexEntry(f"{i:064x}"[::-1], "h", "success", "j", (), ())
                  for i in range(300)]
    monkeypatch.setattr(index_module, "chars_for", lambda count: 3)
    m = di.write(None, everything, (), {}, "")
    monkeypatch.undo()
    raw = msgpack.unpackb(m.encode(), raw=False)
    del raw["chars"]
    legacy = index_module.Manifest.decode(raw)
    assert legacy == m and legacy.chars == 3 and len(legacy.shards) > 16
    assert di.lookup(legacy, [everything[7].id]) == {everything[7].id: everything[7]}
    # The next job's update keeps its width.
    after = di.write(legacy, [everything[7]._replace(hash="h2")], (), {}, "")
    assert after.chars == 3 and di.lookup(after, [everything[7].id])[everything[7].id].hash == "h2"


def test_changed_spec_or_salt_plans_in_full() -> None:
    world = World(("a",))
    world.put("a", {f"/f{i}": b"x" for i in range(20)})
    spec = _spec(_pfs("a"))
    plan = plan_job(spec, "s1", _commits(world, spec), PFSSource(world.pfs), None)
    base = _succeed(world, plan, None, "j0")
    src = CountingSource(world.pfs)
    plan = plan_job(spec, "s2", _commits(world, spec), src, base)
    assert src.globs == 1 and len(plan.process) == 20
    src = CountingSource(world.pfs)
    other = _spec(_pfs("a", "/f1*"))
    plan = plan_job(other, "s1", _commits(world, other), src, base)
    assert src.globs == 1 and len(plan.process) == 0 and len(plan.removed) == 9
    assert plan.data_total == 11


def test_recovered_datums_run_again_without_a_change() -> None:
    world = World(("a",))
    world.put("a", {f"/f{i}": b"x" for i in range(10)})
    spec = _spec(_pfs("a"))
    plan = plan_job(spec, "", _commits(world, spec), PFSSource(world.pfs), None)
    di = DatumIndex(world.objects, "p")
    puts = [DatumIndexEntry(d.id, d.hash, "recovered" if n == 3 else "success", "j0", (),
                            tuple(tuple(f) for f in d.files()))
            for n, d in enumerate(plan.process)]
    m = di.write(None, puts, (), plan.commits, plan.fingerprint)
    assert m.retry == (plan.process[3].id,)
    world.put("a", {"/f1": b"changed"})
    src = CountingSource(world.pfs)
    again = plan_job(spec, "", _commits(world, spec), src, Base("j0", di, m))
    assert sorted(d.id for d in again.process) == sorted([plan.process[3].id, next(
        d.id for d in plan.process if d.files()[0].path == "/f1")])
    assert src.globs == 0


def test_an_index_of_the_old_format_is_sharded_on_first_read() -> None:
    objects = MemoryObjectStore()
    entries = [DatumIndexEntry(f"{i:064x}", "h", "success", "j0", (f"/o{i}",), ())
               for i in range(300)]
    objects.put(keys.index_object("p", "j0"), msgpack.packb([e.encode() for e in entries]))
    di = DatumIndex(objects, "p")
    m = di.manifest("j0")
    assert m is not None and m.count == 300 and not m.commits
    assert sorted(e.id for e in di.entries(m)) == sorted(e.id for e in entries)
    assert di.lookup(m, [entries[5].id]) == {entries[5].id: entries[5]}
    again = DatumIndex(objects, "p").manifest("j0")
    assert again == m


def test_a_base_commit_that_is_gone_plans_in_full() -> None:
    world = World(("a",))
    world.put("a", {f"/f{i}": b"x" for i in range(10)})
    spec = _spec(_pfs("a"))
    plan = plan_job(spec, "", _commits(world, spec), PFSSource(world.pfs), None)
    base = _succeed(world, plan, None, "j0")
    gone = Base(base.job, base.index, dataclasses.replace(base.manifest,
                                                          commits={"a": "f" * 32}))
    world.put("a", {"/f1": b"changed"})
    src = CountingSource(world.pfs)
    again = plan_job(spec, "", _commits(world, spec), src, gone)
    assert src.globs == 1 and [d.files()[0].path for d in again.process] == ["/f1"]
