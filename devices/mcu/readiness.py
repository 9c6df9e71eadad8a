"""Will this int8 .tflite run under TFLite Micro, and does it fit the part?

`analyse()` checks every op against the supported-op registry, sums the constant bytes
(flash) and plans the activation arena (RAM); `require_ready()` turns a failing report
into a PipelineError with the exit code the CLI contract asks for.

TFLite Micro itself referees (devices/mcu/tflm.py): `analyse()` also loads the model in the
real interpreter, keeps its verdict beside the project's own (`tflm`), and refuses an op
TFLite Micro cannot resolve as it refuses an op missing from the registry. Its arena is
larger than the plan: its head (the planned tensor buffers) equals the plan to the byte on
the test models (ResNet-8 1,728 bytes, the depthwise student 288, the small CNN 1,088), and
its tail, the whole gap, holds its own runtime structures (a TfLiteEvalTensor per tensor,
persistent TfLiteTensors, per-op data such as per-channel multipliers, a NodeAndRegistration
per op): 4,528, 3,456 and 2,080 bytes there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from devices.errors import BudgetError, PipelineError
from devices.mcu.graph import Graph, Operator, load_graph
from devices.mcu.memory_plan import MemoryPlan, plan_memory
from devices.mcu.ops import FUSED_ACTIVATIONS, SUPPORTED_OPS, fused_activation
from devices.mcu.tflm import TflmVerdict, tflm_crash, tflm_installed, tflm_verdict

# Data types an op may read or write on an int8 microcontroller graph. QUANTIZE may read
# float32 and DEQUANTIZE may write it: those sit at the graph edges.
_INT8_GRAPH_TYPES = {"INT8", "INT32"}
_FLOAT_EDGE_OPS = {"QUANTIZE", "DEQUANTIZE"}


class UnsupportedOperatorError(PipelineError):
    """The model holds an op (or op variant) TFLite Micro's int8 kernels cannot run."""

    exit_code = 2


@dataclass(frozen=True)
class OpCheck:
    index: int
    name: str
    supported: bool
    reason: str
    macs: int


@dataclass(frozen=True)
class ReadinessReport:
    model: str
    ops: list[OpCheck]
    flash_bytes: int  # weights and constants
    ram_bytes: int  # peak of the greedy arena plan
    peak_live_bytes: int
    peak_op: int
    peak_tensors: list[str]
    macs: int
    flash_kb_limit: float | None
    ram_kb_limit: float | None
    violations: list[str] = field(default_factory=list)
    tflm: dict[str, Any] | None = None  # TflmVerdict.to_dict(); None when not asked

    @property
    def unsupported(self) -> list[OpCheck]:
        return [op for op in self.ops if not op.supported]

    @property
    def ready(self) -> bool:
        return not self.unsupported and not self.violations

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["unsupported"] = [asdict(op) for op in self.unsupported]
        document["ready"] = self.ready
        return document

    def to_text(self) -> str:
        lines = [f"TFLite Micro readiness of {self.model}"]
        for op in self.ops:
            mark = "ok " if op.supported else "NO "
            detail = f"  {op.reason}" if op.reason else ""
            macs = f"  {op.macs:,} MACs" if op.macs else ""
            lines.append(f"  {mark} #{op.index:<3} {op.name}{macs}{detail}")
        lines.append(f"  MACs per inference: {self.macs:,}")
        lines.append(f"  flash (weights + constants): {_kib(self.flash_bytes)}"
                     f"{_limit(self.flash_kb_limit)}")
        lines.append(f"  RAM (greedy arena plan):     {_kib(self.ram_bytes)}"
                     f"{_limit(self.ram_kb_limit)}")
        lines.extend(self._arena_comparison())
        lines.append(f"  peak at op #{self.peak_op}: {self.peak_live_bytes:,} bytes live in "
                     + ", ".join(self.peak_tensors))
        for violation in self.violations:
            lines.append(f"  BUDGET: {violation}")
        if self.unsupported:
            lines.append(f"  NOT READY: {len(self.unsupported)} unsupported op(s)")
        lines.append("  ready" if self.ready else "  not ready")
        return "\n".join(lines)

    def _arena_comparison(self) -> list[str]:
        if self.tflm is None:
            return ["  TFLite Micro: not installed, no second opinion (its wheel exists for "
                    "Linux x86-64: pip install tflite-micro)"]
        measured = self.tflm.get("arena_bytes")
        if measured is None:
            return [f"  arena: planner {self.ram_bytes:,} bytes, TFLite Micro unknown "
                    f"({self.tflm.get('note')})"]
        head, tail = self.tflm.get("arena_head_bytes"), self.tflm.get("arena_tail_bytes")
        split = f" (buffers {head:,} + runtime {tail:,})" if None not in (head, tail) else ""
        return [f"  arena: planner {self.ram_bytes:,} bytes, TFLite Micro {measured:,} bytes"
                f"{split}",
                f"  gap {measured - self.ram_bytes:,} bytes: TFLite Micro's arena also holds its "
                "runtime structures (interpreter, tensors' metadata, per-op data)"]


def _kib(size: int) -> str:
    return f"{size:,} bytes ({size / 1024:.1f} KiB)"


def _limit(limit_kb: float | None) -> str:
    return f" of {limit_kb:g} KiB budget" if limit_kb is not None else ""


def analyse(tflite_path: Path, flash_kb: float | None, ram_kb: float | None,
            name: str | None = None) -> ReadinessReport:
    """`name`: how messages call the model (default its path)."""
    graph = load_graph(Path(tflite_path))
    verdict = tflm_verdict(Path(tflite_path)) if tflm_installed() else None
    return analyse_graph(graph, flash_kb, ram_kb, name=name or str(tflite_path), tflm=verdict)


def analyse_graph(
    graph: Graph, flash_kb: float | None, ram_kb: float | None, name: str = "model",
    tflm: TflmVerdict | None = None,
) -> ReadinessReport:
    checks = [check_operator(graph, op) for op in graph.operators]
    if graph.extra_subgraphs:
        checks.append(OpCheck(-1, "SUBGRAPHS", False,
                              f"{graph.extra_subgraphs + 1} subgraphs; expected one", 0))
    if tflm is not None:
        checks = with_tflm_refusal(checks, tflm)
    flash = constant_bytes(graph)
    plan: MemoryPlan = plan_memory(graph)
    violations = budget_violations(flash, plan.arena_bytes, flash_kb, ram_kb)
    return ReadinessReport(
        model=name,
        ops=checks,
        flash_bytes=flash,
        ram_bytes=plan.arena_bytes,
        peak_live_bytes=plan.peak_live_bytes,
        peak_op=plan.peak_op,
        peak_tensors=list(plan.peak_tensors),
        macs=sum(c.macs for c in checks),
        flash_kb_limit=flash_kb,
        ram_kb_limit=ram_kb,
        violations=violations,
        tflm=tflm.to_dict() if tflm is not None else None,
    )


def with_tflm_refusal(checks: list[OpCheck], verdict: TflmVerdict) -> list[OpCheck]:
    """Mark the op TFLite Micro cannot resolve (or the model, when it fails otherwise)."""
    if verdict.runs:
        return checks
    if verdict.missing_op is None:
        return [*checks, OpCheck(-1, "TFLITE_MICRO", False,
                                 f"TFLite Micro cannot allocate the model: {verdict.error}", 0)]
    first_message = (verdict.error or "").split("; ")[0]
    refusal = f"TFLite Micro's op resolver lacks it ({first_message})"
    marked = [
        replace(check, supported=False, macs=0,
                reason="; ".join(part for part in (check.reason, refusal) if part))
        if check.name == verdict.missing_op else check
        for check in checks
    ]
    if not any(check.name == verdict.missing_op for check in checks):  # e.g. a custom op
        marked.append(OpCheck(-1, verdict.missing_op, False, refusal, 0))
    return marked


def constant_bytes(graph: Graph) -> int:
    return sum(t.nbytes for t in graph.tensors if t.is_constant)


def check_operator(graph: Graph, op: Operator) -> OpCheck:
    spec = SUPPORTED_OPS.get(op.name)
    if spec is None:
        return OpCheck(op.index, op.name, False, "not in TFLite Micro's int8 CNN op set", 0)
    reason = _type_problem(graph, op)
    if not reason and spec.has_fused_activation:
        activation = fused_activation(op)
        if activation not in FUSED_ACTIVATIONS:
            reason = f"fused activation {activation} is not ReLU/ReLU6"
    if not reason and op.name in {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}:
        weights = graph.tensor(op.inputs[1])
        if not weights.is_constant:
            reason = "weights are not constant"
    if reason:
        return OpCheck(op.index, op.name, False, reason, 0)
    return OpCheck(op.index, op.name, True, "", spec.macs(graph, op))


def _type_problem(graph: Graph, op: Operator) -> str:
    for tensor in graph.op_inputs(op) + graph.op_outputs(op):
        if tensor is None or tensor.type_name in _INT8_GRAPH_TYPES:
            continue
        if op.name in _FLOAT_EDGE_OPS and tensor.type_name == "FLOAT32":
            continue
        return f"tensor {tensor.name!r} is {tensor.type_name}; expected int8 (full-int8 export)"
    return ""


def budget_violations(
    flash_bytes: int, ram_bytes: int, flash_kb: float | None, ram_kb: float | None
) -> list[str]:
    violations = []
    if flash_kb is not None and flash_bytes > flash_kb * 1024:
        violations.append(f"flash {flash_bytes / 1024:.1f} KiB exceeds flash_kb = {flash_kb:g}")
    if ram_kb is not None and ram_bytes > ram_kb * 1024:
        violations.append(f"RAM {ram_bytes / 1024:.1f} KiB exceeds ram_kb = {ram_kb:g}")
    return violations


def require_ready(report: ReadinessReport) -> None:
    """Raise UnsupportedOperatorError (exit 2) or BudgetError (exit 1) for a failing report."""
    if report.unsupported:
        listed = "; ".join(f"op #{op.index} {op.name}: {op.reason}" for op in report.unsupported)
        raise UnsupportedOperatorError(
            f"{report.model} cannot run on the microcontroller target: {listed}; expected only "
            f"{', '.join(sorted(SUPPORTED_OPS))} on int8 tensors (hint: replace the layer in the "
            "model, or export with full-integer quantisation)"
        )
    if report.violations:
        raise BudgetError(
            f"{report.model} does not fit the target: {'; '.join(report.violations)} (peak RAM "
            f"at op #{report.peak_op}: {', '.join(report.peak_tensors)}) (hint: prune more "
            "channels, use a narrower student, or raise the budget in the target profile)"
        )


def refuse_tflm_crash(tflite_path: Path, label: str) -> None:
    """UnsupportedOperatorError (exit 2) when TFLite Micro's wheel dies loading the model:
    `analyse` would die with it, in this process (devices/mcu/tflm.py, `tflm_crash`)."""
    crash = tflm_crash(Path(tflite_path)) if tflm_installed() else None
    if crash is not None:
        raise UnsupportedOperatorError(
            f"{label}: TensorFlow Lite Micro (the tflite-micro wheel, this target's referee) "
            f"crashed loading it ({crash}), so it cannot be judged ready for the "
            "microcontroller (hint: check the model in TFLite Micro itself; after `pip uninstall "
            "tflite-micro` readiness judges it by this project's op table alone)")


def ready_or_raise(tflite_path: Path, flash_kb: float | None, ram_kb: float | None
                   ) -> ReadinessReport:
    report = analyse(tflite_path, flash_kb, ram_kb)
    require_ready(report)
    return report


__all__ = [
    "ReadinessReport", "OpCheck", "UnsupportedOperatorError", "analyse", "analyse_graph",
    "require_ready", "ready_or_raise", "refuse_tflm_crash", "with_tflm_refusal",
]
