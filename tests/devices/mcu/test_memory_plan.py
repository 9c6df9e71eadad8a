"""The greedy arena plan against peaks computed by hand."""

from __future__ import annotations

import numpy as np
import tflite

from devices.mcu import tflite_builder as fb
from devices.mcu.graph import parse_graph
from devices.mcu.memory_plan import _Request, align, plan_memory, plan_requests

OP = tflite.BuiltinOperator
OPTIONS = tflite.BuiltinOptions


def test_greedy_plan_reuses_memory_and_aligns_to_16() -> None:
    # A lives ops 0-1, B ops 1-2, C ops 2-3. Largest first: A at 0; C (no overlap with A)
    # reuses 0; B overlaps both and goes above A at align(100) = 112.
    requests = [_Request(0, "A", 100, 0, 1), _Request(1, "B", 50, 1, 2),
                _Request(2, "C", 80, 2, 3)]
    placed = {a.name: a.offset for a in plan_requests(requests)}
    assert placed == {"A": 0, "C": 0, "B": 112}
    assert align(162) == 176


def test_greedy_plan_fills_a_gap_below_a_placed_buffer() -> None:
    # big [0,0] at 0, mid [1,1] at 0, low [0,1]: overlaps both -> above big at 208;
    # tiny [1,1]: mid covers 0..64, low covers 208..; the gap 64..208 takes it at 64.
    requests = [_Request(0, "big", 200, 0, 0), _Request(1, "low", 100, 0, 1),
                _Request(2, "mid", 64, 1, 1), _Request(3, "tiny", 16, 1, 1)]
    placed = {a.name: a.offset for a in plan_requests(requests)}
    assert placed == {"big": 0, "low": 208, "mid": 0, "tiny": 64}


def _chain_model() -> bytes:
    """in (1,8,8,4)=256 B -> conv -> a (1,8,8,8)=512 -> max pool -> b (1,4,4,8)=128
    -> reshape -> c (1,128)=128 -> fully connected -> out (1,10)=10."""
    rng = np.random.default_rng(0)
    q = {"scales": (0.1,), "zero_points": (0,)}
    tensors = [
        fb.TensorSpec("in", (1, 8, 8, 4), **q),
        fb.TensorSpec("w", (8, 3, 3, 4), scales=(0.01,) * 8, zero_points=(0,) * 8,
                      data=rng.integers(-127, 128, (8, 3, 3, 4)).astype(np.int8)),
        fb.TensorSpec("a", (1, 8, 8, 8), **q),
        fb.TensorSpec("b", (1, 4, 4, 8), **q),
        fb.TensorSpec("shape", (2,), np.int32, data=np.array([1, 128], dtype=np.int32)),
        fb.TensorSpec("c", (1, 128), **q),
        fb.TensorSpec("fc_w", (10, 128), scales=(0.01,), zero_points=(0,),
                      data=rng.integers(-127, 128, (10, 128)).astype(np.int8)),
        fb.TensorSpec("out", (1, 10), **q),
    ]
    ops = [
        fb.OpSpec(OP.CONV_2D, (0, 1, -1), (2,), OPTIONS.Conv2DOptions,
                  fb.conv_options(0, (1, 1))),
        fb.OpSpec(OP.MAX_POOL_2D, (2,), (3,), OPTIONS.Pool2DOptions,
                  fb.pool_options(1, (2, 2), (2, 2))),
        fb.OpSpec(OP.RESHAPE, (3, 4), (5,), OPTIONS.ReshapeOptions, fb.reshape_options((1, 128))),
        fb.OpSpec(OP.FULLY_CONNECTED, (5, 6, -1), (7,), OPTIONS.FullyConnectedOptions,
                  fb.fully_connected_options()),
    ]
    return fb.build_model(tensors, ops, [0], [7])


def test_plan_of_a_chain_matches_the_hand_computed_peak() -> None:
    plan = plan_memory(parse_graph(_chain_model()))
    offsets = {a.name: a.offset for a in plan.allocations}
    # a (512) at 0; in (256) overlaps a at op 0 -> 512; b (128) overlaps a at op 1 -> 512;
    # c (128) overlaps only b -> 0; out (10) overlaps c -> 128.
    assert offsets == {"a": 0, "in": 512, "b": 512, "c": 0, "out": 128}
    assert plan.arena_bytes == 768
    assert plan.peak_op == 0 and plan.peak_live_bytes == 768
    assert plan.peak_tensors == ("a", "in")


def test_plans_never_overlap_live_tensors(resnet8_int8) -> None:
    from devices.mcu.graph import load_graph

    plan = plan_memory(load_graph(resnet8_int8.path))
    for first in plan.allocations:
        for second in plan.allocations:
            if first.tensor < second.tensor and first.overlaps_in_time(second):
                assert first.end <= second.offset or second.end <= first.offset, (first, second)
    assert plan.arena_bytes >= plan.peak_live_bytes
