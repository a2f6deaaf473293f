"""Layered (Sugiyama-style) layout of the DAG of repos and pipelines.

Computed in Python on the server and drawn as SVG, so the console ships no
graph library (and nothing to rebuild at install time). The classic steps,
kept small:

1. **Layers** by longest path from the sources: a node sits one layer below
   its deepest input, so every edge points down.
2. **Dummy nodes** split an edge spanning several layers into one-layer
   hops, so long edges bend around nodes instead of crossing them.
3. **Ordering** within layers by the barycenter heuristic: a few sweeps down
   (order by the mean position of the inputs) and up (of the outputs), which
   removes most crossings in DAGs of this size. Ties keep name order, so the
   same DAG always gets the same picture.
4. **Coordinates**: layers are rows, nodes spaced evenly and each row
   centered.

The cost is O(sweeps x edges x log): microseconds for the 20-pipeline DAGs
the console is measured on. A cycle (which PFS forbids) is broken by
ignoring the edges that close it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["NODE_H", "NODE_W", "Layout", "layout"]

NODE_W = 190
NODE_H = 58
GAP_X = 40
GAP_Y = 60
MARGIN = 20
SWEEPS = 8


@dataclass(frozen=True)
class Layout:
    """Positions (top-left corners) of nodes, and each edge as a polyline.

    Attributes:
        nodes: node -> (x, y).
        edges: (source, target) -> points from the source's bottom to the
            target's top, through the dummy nodes of a long edge.
        width, height: of the whole drawing.
    """

    nodes: Mapping[str, tuple[float, float]]
    edges: Mapping[tuple[str, str], tuple[tuple[float, float], ...]]
    width: float
    height: float


def _layers(nodes: Sequence[str], preds: Mapping[str, list[str]]) -> dict[str, int]:
    layer: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(n: str) -> int:
        if n in layer:
            return layer[n]
        visiting.add(n)
        d = 0
        for p in preds.get(n, ()):
            if p in visiting:  # a cycle: ignore the closing edge
                continue
            d = max(d, depth(p) + 1)
        visiting.discard(n)
        layer[n] = d
        return d

    for n in nodes:
        depth(n)
    return layer


def layout(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> Layout:
    """Lay out a DAG given its node names and (source, target) edges.

    Edges naming unknown nodes are ignored.
    """
    names = sorted(set(nodes))
    known = set(names)
    es = sorted({(a, b) for a, b in edges if a in known and b in known and a != b})
    preds: dict[str, list[str]] = {n: [] for n in names}
    for a, b in es:
        preds[b].append(a)
    layer = _layers(names, preds)
    # Drop edges that point up (only possible when a cycle was broken).
    es = [(a, b) for a, b in es if layer[a] < layer[b]]

    # Dummy nodes: an edge spanning k layers becomes k one-layer hops.
    chains: dict[tuple[str, str], list[str]] = {}
    lay: dict[str, int] = dict(layer)
    up: dict[str, list[str]] = {n: [] for n in names}
    down: dict[str, list[str]] = {n: [] for n in names}
    for a, b in es:
        chain = [a]
        for i in range(layer[a] + 1, layer[b]):
            d = f"\0{a}\0{b}\0{i}"
            lay[d] = i
            up[d], down[d] = [], []
            chain.append(d)
        chain.append(b)
        for s, t in itertools.pairwise(chain):
            down[s].append(t)
            up[t].append(s)
        chains[(a, b)] = chain

    rows: list[list[str]] = [[] for _ in range(max(lay.values(), default=-1) + 1)]
    for n in sorted(lay, key=lambda n: (n.startswith("\0"), n)):
        rows[lay[n]].append(n)
    pos = {n: float(i) for row in rows for i, n in enumerate(row)}

    def sweep(order: Iterable[int], neighbours: Mapping[str, list[str]]) -> None:
        for r in order:
            row = rows[r]

            def key(n: str) -> tuple[float, float]:
                ns = neighbours[n]
                bary = sum(pos[m] for m in ns) / len(ns) if ns else pos[n]
                return (bary, pos[n])

            row.sort(key=key)
            for i, n in enumerate(row):
                pos[n] = float(i)

    for _ in range(SWEEPS // 2):
        sweep(range(1, len(rows)), up)
        sweep(range(len(rows) - 2, -1, -1), down)

    widest = max((len(r) for r in rows), default=0)
    width = 2 * MARGIN + widest * NODE_W + max(0, widest - 1) * GAP_X
    xy: dict[str, tuple[float, float]] = {}
    for r, row in enumerate(rows):
        row_w = len(row) * NODE_W + max(0, len(row) - 1) * GAP_X
        x0 = (width - row_w) / 2
        for i, n in enumerate(row):
            xy[n] = (x0 + i * (NODE_W + GAP_X), MARGIN + r * (NODE_H + GAP_Y))
    height = 2 * MARGIN + len(rows) * NODE_H + max(0, len(rows) - 1) * GAP_Y

    lines: dict[tuple[str, str], tuple[tuple[float, float], ...]] = {}
    for (a, b), chain in chains.items():
        pts: list[tuple[float, float]] = []
        for i, n in enumerate(chain):
            x, y = xy[n]
            cx = x + NODE_W / 2
            if i == 0:
                pts.append((cx, y + NODE_H))
            elif i == len(chain) - 1:
                pts.append((cx, y))
            else:  # a dummy: pass through its slot, top to bottom
                pts.append((cx, y))
                pts.append((cx, y + NODE_H))
        lines[(a, b)] = tuple(pts)
    return Layout(nodes={n: xy[n] for n in names}, edges=lines, width=width, height=height)
