"""The bit-exactness gate: board outputs must equal the referee's (LiteRT's reference kernels
or TensorFlow Lite Micro, devices/mcu/referees.py), sample by sample."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from devices.errors import ValidationError


class BitExactnessError(ValidationError):
    """The generated C code disagrees with its referee."""


@dataclass(frozen=True)
class BitExactness:
    samples: int
    outputs_per_sample: int
    mismatches: int

    def to_dict(self) -> dict[str, int | bool]:
        return {**asdict(self), "bit_exact": self.mismatches == 0}


def compare_outputs(board: np.ndarray, reference: np.ndarray, where: str,
                    referee: str = "LiteRT's reference kernels") -> BitExactness:
    """Raise BitExactnessError naming the first differing sample and output index."""
    board = np.asarray(board, dtype=np.int8)
    reference = np.asarray(reference, dtype=np.int8).reshape(board.shape[0], -1)
    if board.shape != reference.shape:
        raise BitExactnessError(
            f"{where} returned outputs of shape {board.shape}, {referee} {reference.shape} "
            "(hint: the firmware was built from a different model than the bundle's)"
        )
    differing = np.argwhere(board != reference)
    if differing.size:
        sample, output = (int(v) for v in differing[0])
        raise BitExactnessError(
            f"{where} is not bit-exact with {referee}: {len(differing)} of "
            f"{board.size} outputs differ; first at sample {sample}, output {output}: board "
            f"{int(board[sample, output])}, reference {int(reference[sample, output])} (hint: "
            "a kernel of devices/mcu/mcu_kernels.c rounds differently; run "
            "tests/devices/mcu/test_kernels.py)"
        )
    return BitExactness(board.shape[0], board.shape[1] if board.ndim > 1 else 0, 0)
