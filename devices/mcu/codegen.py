"""Portable C99 for a whole int8 TFLite graph: const weights, one static arena, no heap.

`generate_sources()` writes model.c/model.h (and model_samples.c when samples are given)
next to a copy of the kernels (mcu_kernels.c/.h); the entry point is
`void model_invoke(const int8_t *input, int8_t *output)`.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.errors import ArtifactError
from devices.fsutil import atomic_directory
from devices.mcu.c_source import float_literal
from devices.mcu.emitters import EMITTERS, EmitContext, EmittedOp
from devices.mcu.graph import Graph, load_graph
from devices.mcu.memory_plan import MemoryPlan, plan_memory
from devices.mcu.ops import graph_macs
from devices.mcu.readiness import analyse_graph, require_ready
from devices.mcu.referees import DEFAULT_REFEREE, REFEREES, Referee
from devices.runtimes import quantize_input

KERNEL_FILES = ("mcu_kernels.c", "mcu_kernels.h")
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class GeneratedSources:
    directory: Path
    files: tuple[str, ...]
    arena_bytes: int
    scratch_bytes: int
    constant_bytes: int  # weights and constants of the model itself
    macs: int
    input_shape: tuple[int, ...]
    input_scale: float
    input_zero_point: int
    output_shape: tuple[int, ...]
    output_scale: float
    output_zero_point: int
    samples: int

    @property
    def input_bytes(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def output_bytes(self) -> int:
        return int(np.prod(self.output_shape))

    def sources(self) -> list[Path]:
        return [self.directory / name for name in self.files if name.endswith(".c")]

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["directory"] = str(self.directory)
        return document


def generate_sources(tflite_path: Path, out_dir: Path, *, inputs: np.ndarray | None = None,
                     referee: str = DEFAULT_REFEREE) -> GeneratedSources:
    """Write the C sources for `tflite_path` into `out_dir` (replaced atomically).

    `inputs`: optional samples for the firmware; float32 samples are quantised with the
    model's input scale and zero point, int8 samples are taken as they are. `referee`: the
    runtime (devices/mcu/referees.py) whose rounding the C reproduces bit for bit.
    """
    graph = load_graph(Path(tflite_path))
    require_ready(analyse_graph(graph, None, None, name=str(tflite_path)))
    source_tensor, output_tensor = _single_int8_io(graph)
    plan = plan_memory(graph)
    emitted = _emit_operators(graph, plan, REFEREES[referee])
    scratch = max((op.scratch_int16 for op in emitted), default=0)
    samples = _samples(inputs, source_tensor) if inputs is not None else None

    files = {
        "model.h": _model_header(graph, plan, scratch, source_tensor, output_tensor,
                                 graph_macs(graph)),
        "model.c": _model_source(graph, plan, emitted, scratch, source_tensor, output_tensor),
    }
    files["README.md"] = _readme(graph_macs(graph), plan.arena_bytes, scratch * 2)
    if samples is not None:
        files["model_samples.h"] = _samples_header(samples)
        files["model_samples.c"] = _samples_source(samples)
    with atomic_directory(Path(out_dir)) as temp:
        for name, text in files.items():
            (temp / name).write_text(text, encoding="utf-8")
        for name in KERNEL_FILES:
            shutil.copyfile(HERE / name, temp / name)
    return GeneratedSources(
        directory=Path(out_dir),
        files=tuple(sorted([*files, *KERNEL_FILES])),
        arena_bytes=plan.arena_bytes,
        scratch_bytes=scratch * 2,
        constant_bytes=sum(t.nbytes for t in graph.tensors if t.is_constant),
        macs=graph_macs(graph),
        input_shape=source_tensor.shape,
        input_scale=source_tensor.scale,
        input_zero_point=source_tensor.zero_point,
        output_shape=output_tensor.shape,
        output_scale=output_tensor.scale,
        output_zero_point=output_tensor.zero_point,
        samples=0 if samples is None else len(samples),
    )


def _single_int8_io(graph: Graph) -> tuple[Any, Any]:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ArtifactError(
            f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; the "
            "C generator expects one of each (hint: export a single-input classifier)"
        )
    source, output = graph.tensor(graph.inputs[0]), graph.tensor(graph.outputs[0])
    for role, tensor in (("input", source), ("output", output)):
        if tensor.type_name != "INT8":
            raise ArtifactError(
                f"model {role} {tensor.name!r} is {tensor.type_name}; expected INT8 (hint: "
                "export with inference_input_type/inference_output_type = tf.int8)"
            )
    return source, output


def _emit_operators(graph: Graph, plan: MemoryPlan, referee: Referee) -> list[EmittedOp]:
    offsets = {a.tensor: a.offset for a in plan.allocations}

    def tensor_ref(index: int) -> str:
        return f"(mcu_arena + {offsets[index]})"

    context = EmitContext(graph=graph, tensor_ref=tensor_ref,
                          fully_connected_single_rounding=referee.fully_connected_single_rounding)
    emitted = []
    for op in graph.operators:
        emit = EMITTERS.get(op.name)
        if emit is None:
            raise ArtifactError(
                f"op #{op.index} {op.name} has no C emitter; expected one of "
                f"{', '.join(sorted(EMITTERS))} (hint: for SOFTMAX export logits and apply "
                "softmax on the host)"
            )
        emitted.append(emit(context, op))
    return emitted


def _samples(inputs: np.ndarray, source: Any) -> np.ndarray:
    array = np.asarray(inputs)
    per_sample = int(np.prod(source.shape[1:])) if len(source.shape) > 1 else source.elements
    if array.dtype != np.int8:
        array = quantize_input(array.astype(np.float32), source.scale, source.zero_point, np.int8)
    if array.size % per_sample:
        raise ArtifactError(
            f"samples of shape {array.shape} do not divide into model inputs of shape "
            f"{source.shape} (hint: inputs.npz `x` must match the model input)"
        )
    return array.reshape(-1, per_sample)


_PRELUDE = """#if defined(__GNUC__)
#define MCU_ALIGNED(n) __attribute__((aligned(n)))
#else
#define MCU_ALIGNED(n)
#endif
#ifdef MCU_LAYER_PROFILE
#define MODEL_LAYER_MARK(mark) model_layer_mark(mark)
#else
#define MODEL_LAYER_MARK(mark) ((void)0)
#endif
"""


def _model_header(graph: Graph, plan: MemoryPlan, scratch: int, source: Any, output: Any,
                  macs: int) -> str:
    name = Path(graph.source).name if graph.source else "model"
    return f"""/* Generated by devices.mcu.codegen from {name}. Do not edit. */
#ifndef MODEL_H
#define MODEL_H

#include <stdint.h>

#define MODEL_INPUT_BYTES {source.elements}
#define MODEL_OUTPUT_BYTES {output.elements}
#define MODEL_ARENA_BYTES {plan.arena_bytes}
#define MODEL_SCRATCH_BYTES {scratch * 2}
#define MODEL_MACS {macs}UL
#define MODEL_OP_COUNT {len(graph.operators)}
#define MODEL_INPUT_SCALE {float_literal(source.scale)}
#define MODEL_INPUT_ZERO_POINT {source.zero_point}
#define MODEL_OUTPUT_SCALE {float_literal(output.scale)}
#define MODEL_OUTPUT_ZERO_POINT {output.zero_point}

#ifdef __cplusplus
extern "C" {{
#endif

/* Runs one inference: `input` holds MODEL_INPUT_BYTES int8 values (NHWC, quantised with
 * MODEL_INPUT_SCALE / MODEL_INPUT_ZERO_POINT), `output` receives MODEL_OUTPUT_BYTES. */
void model_invoke(const int8_t *input, int8_t *output);

#ifdef MCU_LAYER_PROFILE
/* Defined by the benchmark firmware, which times the layers with it: called with 0 before
 * the first op and with i + 1 after op i (the i-th of the graph's operators). */
void model_layer_mark(uint32_t mark);
#endif

#ifdef __cplusplus
}}
#endif

#endif /* MODEL_H */
"""


def _model_source(graph: Graph, plan: MemoryPlan, emitted: list[EmittedOp], scratch: int,
                  source: Any, output: Any) -> str:
    input_offset = plan.offset_of(graph.inputs[0])
    output_offset = plan.offset_of(graph.outputs[0])
    declarations = "\n".join(d for op in emitted for d in op.declarations)
    calls = "\n".join(
        f"    /* #{graph_op.index} {graph_op.name} */\n    {op.call}\n"
        f"    MODEL_LAYER_MARK({position + 1});"
        for position, (graph_op, op) in enumerate(zip(graph.operators, emitted, strict=True))
    )
    return f"""/* Generated by devices.mcu.codegen. Do not edit. */
#include <string.h>

#include "mcu_kernels.h"
#include "model.h"

{_PRELUDE}
/* activations, laid out by the greedy memory plan (peak at op #{plan.peak_op}) */
static int8_t mcu_arena[{max(plan.arena_bytes, 16)}] MCU_ALIGNED(16);
static int16_t mcu_scratch[{max(scratch, 2)}] MCU_ALIGNED(16);

{declarations}
void model_invoke(const int8_t *input, int8_t *output) {{
    memcpy(mcu_arena + {input_offset}, input, {source.elements});
    MODEL_LAYER_MARK(0);
{calls}
    memcpy(output, mcu_arena + {output_offset}, {output.elements});
    (void)mcu_scratch;
}}
"""


def _samples_header(samples: np.ndarray) -> str:
    return f"""/* Generated by devices.mcu.codegen: bundled test samples, int8 quantised. */
#ifndef MODEL_SAMPLES_H
#define MODEL_SAMPLES_H

#include <stdint.h>

#define MODEL_SAMPLE_COUNT {samples.shape[0]}
extern const int8_t model_samples[MODEL_SAMPLE_COUNT][{samples.shape[1]}];

#endif /* MODEL_SAMPLES_H */
"""


def _samples_source(samples: np.ndarray) -> str:
    rows = ",\n".join(
        "    {" + ", ".join(str(int(v)) for v in row) + "}" for row in samples
    )
    return f"""/* Generated by devices.mcu.codegen. Do not edit. */
#include "model_samples.h"

const int8_t model_samples[MODEL_SAMPLE_COUNT][{samples.shape[1]}] = {{
{rows}
}};
"""


def _readme(macs: int, arena_bytes: int, scratch_bytes: int) -> str:
    return f"""# Generated int8 model (portable C99)

Add `model.c` and `mcu_kernels.c` to your firmware project and include `model.h`:

```c
#include "model.h"
static int8_t input[MODEL_INPUT_BYTES], output[MODEL_OUTPUT_BYTES];
/* q = clamp(round(x / MODEL_INPUT_SCALE) + MODEL_INPUT_ZERO_POINT, -128, 127) */
model_invoke(input, output);  /* logits, int8: MODEL_OUTPUT_SCALE/ZERO_POINT */
```

- {macs:,} MACs per inference; static RAM: {arena_bytes:,} B arena + {scratch_bytes:,} B scratch.
- No heap, no libm; weights are `const` (they stay in flash).
- On Cortex-M4/M7 compile with `-DMCU_USE_SIMD` for the SMLAD inner loops (same results).
- Outputs are bit-exact with LiteRT's reference kernels.
"""
