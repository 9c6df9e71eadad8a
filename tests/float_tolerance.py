"""Float32 output comparisons that hold on every CPU.

Kernels differ by machine (FMA or not, SIMD width, oneDNN/XNNPACK/MLAS blocking), so the
same float32 model sums in another order on another CPU: each sum of n products can move
by about n · 1.2e-7 of its magnitude. A fixed absolute bound such as 1e-5 fails as soon as
the outputs are larger than about 10 (seen: 1.3e-5 on an AVX2-only machine).
"""

from __future__ import annotations

import numpy as np

# float32 epsilon (1.2e-7) times ~800: room for a few hundred accumulations per output
# in another order, still 100x below any change a wrong channel or weight makes.
FLOAT32_RTOL = 1e-4


def assert_float32_close(actual: np.ndarray, expected: np.ndarray,
                         rtol: float = FLOAT32_RTOL) -> None:
    """Equal up to float32 rounding in another summation order: `rtol` per element, and
    an absolute floor of `rtol` times the largest |expected|, so elements near zero (whose
    relative error means nothing) are judged on the tensor's own scale."""
    expected = np.asarray(expected, np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol,
                               atol=rtol * scale)
