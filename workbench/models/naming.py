"""Give every node a unique, non-empty name (peers key layers by node name)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and its subgraphs (If/Loop/Scan bodies), depth first, in node order."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def unique_name(base: str, used: set[str]) -> str:
    """``base``, else ``base_1``, ``base_2``… — the first not in ``used`` (which it joins)."""
    name, k = base, 0
    while name in used:
        k += 1
        name = f"{base}_{k}"
    used.add(name)
    return name


def ensure_unique_node_names(graph: onnx.GraphProto) -> list[str]:
    """Name unnamed nodes ``<op_type>_<index>`` and suffix repeated names ``_1``, ``_2``…, in place.

    Existing unique names are kept; the first node with a repeated name keeps it. Returns notes
    describing what changed (empty when nothing did). Deterministic for a given graph.
    """
    graphs = list(_graphs(graph))
    reserved = {n.name for g in graphs for n in g.node if n.name}
    used: set[str] = set()
    unnamed = renamed = 0
    examples: list[str] = []
    for g in graphs:
        for index, node in enumerate(g.node):
            if node.name and node.name not in used:
                used.add(node.name)
                continue
            base = node.name or f"{node.op_type}_{index}"
            name, k = base, 0
            while name in used or (name != node.name and name in reserved):
                k += 1
                name = f"{base}_{k}"
            if node.name:
                renamed += 1
                if len(examples) < 3:
                    examples.append(f"{node.name!r} → {name!r}")
            else:
                unnamed += 1
            node.name = name
            used.add(name)
    notes = []
    if unnamed:
        notes.append(f"named {unnamed} unnamed node(s) <op_type>_<index>")
    if renamed:
        notes.append(f"renamed {renamed} node(s) with duplicate names ({', '.join(examples)})")
    return notes
