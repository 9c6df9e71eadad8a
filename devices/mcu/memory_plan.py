"""Greedy arena plan over tensor lifetimes, the idea of TFLite Micro's GreedyMemoryPlanner.

Every non-constant tensor lives from the op that writes it (0 for graph inputs) to the
last op that reads it (the last op for graph outputs). Buffers are placed largest first,
each at the lowest offset that does not overlap a placed buffer whose lifetime overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.mcu.graph import Graph

ALIGNMENT = 16  # bytes; TFLite Micro aligns arena buffers to 16


@dataclass(frozen=True)
class Allocation:
    tensor: int
    name: str
    size: int
    first_op: int
    last_op: int
    offset: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    def overlaps_in_time(self, other: Allocation | _Request) -> bool:
        return self.first_op <= other.last_op and other.first_op <= self.last_op


@dataclass(frozen=True)
class _Request:
    tensor: int
    name: str
    size: int
    first_op: int
    last_op: int


@dataclass(frozen=True)
class MemoryPlan:
    allocations: tuple[Allocation, ...]
    arena_bytes: int  # end of the highest placed buffer
    peak_op: int  # the op at which the most bytes are live
    peak_live_bytes: int  # bytes live at that op: the lower bound for any plan
    peak_tensors: tuple[str, ...]  # the tensors live at that op, largest first

    def offset_of(self, tensor: int) -> int:
        for allocation in self.allocations:
            if allocation.tensor == tensor:
                return allocation.offset
        raise KeyError(tensor)


def align(size: int, alignment: int = ALIGNMENT) -> int:
    return (size + alignment - 1) // alignment * alignment


def tensor_lifetimes(graph: Graph) -> list[_Request]:
    last_op = max(len(graph.operators) - 1, 0)
    first: dict[int, int] = {index: 0 for index in graph.inputs}
    last: dict[int, int] = {index: 0 for index in graph.inputs}
    for op in graph.operators:
        for index in op.inputs:
            if index >= 0 and not graph.tensor(index).is_constant:
                first.setdefault(index, op.index)
                last[index] = max(last.get(index, op.index), op.index)
        for index in op.outputs:
            first.setdefault(index, op.index)
            last[index] = max(last.get(index, op.index), op.index)
    for index in graph.outputs:
        last[index] = last_op
    return [
        _Request(index, graph.tensor(index).name, graph.tensor(index).nbytes, first[index],
                 last[index])
        for index in sorted(first)
    ]


def plan_requests(requests: list[_Request], alignment: int = ALIGNMENT) -> list[Allocation]:
    placed: list[Allocation] = []
    order = sorted(requests, key=lambda r: (-r.size, r.first_op, r.tensor))
    for request in order:
        conflicts = sorted(
            (a for a in placed if a.overlaps_in_time(request)), key=lambda a: a.offset
        )
        offset = 0
        for other in conflicts:
            if offset + request.size <= other.offset:
                break  # fits in the gap below `other`
            offset = max(offset, align(other.end, alignment))
        placed.append(Allocation(request.tensor, request.name, request.size, request.first_op,
                                 request.last_op, offset))
    return sorted(placed, key=lambda a: a.tensor)


def plan_memory(graph: Graph, alignment: int = ALIGNMENT) -> MemoryPlan:
    requests = tensor_lifetimes(graph)
    allocations = plan_requests(requests, alignment)
    arena = max((a.end for a in allocations), default=0)
    peak_op, peak_bytes, live = 0, 0, []
    for step in range(max(len(graph.operators), 1)):
        at_step = [a for a in allocations if a.first_op <= step <= a.last_op]
        total = sum(a.size for a in at_step)
        if total > peak_bytes:
            peak_op, peak_bytes, live = step, total, at_step
    live_names = tuple(a.name for a in sorted(live, key=lambda a: (-a.size, a.tensor)))
    return MemoryPlan(tuple(allocations), align(arena, alignment) if arena else 0, peak_op,
                      peak_bytes, live_names)
