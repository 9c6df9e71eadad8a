"""The firmware's UART line protocol, parsed the same way for the emulator and a real board.

    MCU-BENCH 1 samples=<n> input=<bytes> output=<bytes> macs=<macs>
    OVERHEAD ticks=<t>
    SAMPLE <i> ticks=<t> out=<hex>
    LAYER <i> ticks=<t>          (per op of the last sample, when built with layer marks)
    DONE
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from devices.base import DeviceError

HEADER = "MCU-BENCH"


@dataclass
class BenchOutput:
    samples: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    macs: int = 0
    overhead_ticks: int = 0
    ticks: list[int] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)
    layer_ticks: list[int] = field(default_factory=list)  # op i of the last sample
    done: bool = False

    def output_matrix(self) -> np.ndarray:
        if not self.outputs:
            return np.zeros((0, self.output_bytes), dtype=np.int8)
        return np.stack(self.outputs)


class ProtocolParser:
    """Feed lines as they arrive; `result` holds what has been parsed so far."""

    def __init__(self) -> None:
        self.result = BenchOutput()
        self.started = False

    def feed(self, line: str) -> None:
        line = line.strip()
        if line.startswith(HEADER):
            fields = _fields(line.split()[2:])
            self.result = BenchOutput(
                samples=fields["samples"], input_bytes=fields["input"],
                output_bytes=fields["output"], macs=fields["macs"],
            )
            self.started = True
        elif not self.started:
            return  # boot noise before the header
        elif line.startswith("OVERHEAD"):
            self.result.overhead_ticks = _fields(line.split()[1:])["ticks"]
        elif line.startswith("SAMPLE"):
            self._sample(line)
        elif line.startswith("LAYER"):
            self._layer(line)
        elif line == "DONE":
            self.result.done = True

    def _sample(self, line: str) -> None:
        parts = line.split()
        index = int(parts[1])
        if index != len(self.result.ticks):
            raise DeviceError(f"firmware printed sample {index}, expected "
                              f"{len(self.result.ticks)} (hint: the serial line dropped data)")
        ticks = int(parts[2].split("=", 1)[1])
        payload = bytes.fromhex(parts[3].split("=", 1)[1])
        if len(payload) != self.result.output_bytes:
            raise DeviceError(f"sample {index} has {len(payload)} output bytes, expected "
                              f"{self.result.output_bytes} (hint: the serial line dropped data)")
        self.result.ticks.append(ticks)
        self.result.outputs.append(np.frombuffer(payload, dtype=np.int8).copy())


    def _layer(self, line: str) -> None:
        parts = line.split()
        if int(parts[1]) != len(self.result.layer_ticks):
            raise DeviceError(f"firmware printed layer {parts[1]}, expected "
                              f"{len(self.result.layer_ticks)} (hint: the serial line dropped "
                              "data)")
        self.result.layer_ticks.append(_fields(parts[2:])["ticks"])


def _fields(tokens: Iterable[str]) -> dict[str, int]:
    values = {}
    for token in tokens:
        key, _, value = token.partition("=")
        values[key] = int(value)
    return values


def parse_output(text: str) -> BenchOutput:
    parser = ProtocolParser()
    for line in text.splitlines():
        parser.feed(line)
    if not parser.started:
        raise DeviceError(
            f"the firmware printed no {HEADER} header; output was: {text[-500:]!r} (hint: "
            "check the UART wiring or the emulator machine)"
        )
    if not parser.result.done:
        raise DeviceError(
            f"the firmware stopped after {len(parser.result.ticks)} of "
            f"{parser.result.samples} samples without DONE (hint: it crashed or ran out of "
            "time; try fewer samples)"
        )
    return parser.result
