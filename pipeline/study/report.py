"""dist/study/: study.json (every point and the answers), study.md (the same as tables and
sentences) and the fronts, front_<target>.png and front_macs.png."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any

import pipeline.plots as plots
from devices.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from pipeline.report import STUDY_FOLDER
from pipeline.study.answer import UNIFORM_OF, ArmAtLevel, group
from pipeline.study.arms import ARM_LABELS
from pipeline.study.run import Study

SCHEMA = "edge-study/1"
STUDY_JSON, STUDY_MD = "study.json", "study.md"


def study_document(study: Study) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config_fingerprint": study.config.fingerprint(),
        "dataset": study.dataset, "targets": list(study.targets),
        "arms": {arm: ARM_LABELS[arm] for arm in study.config.study.arms},
        "seeds": study.config.study.seeds, "seconds": study.seconds,
        "levels": [dataclasses.asdict(plan) | {"macs": plan.macs} for plan in study.plans],
        "points": [point.record for point in study.points],
        **study.answers,
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _latency_cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    if entry.get("ms") is None:
        return "not measured"
    return f"{entry['ms']:.4g}" + (f" ({entry['instructions']:,} instr)"
                                   if entry.get("instructions") else "")


def render_markdown(document: dict[str, Any]) -> str:
    targets = document["targets"]
    dataset = document["dataset"]
    lines = ["# Distillation or pruning? The study", "",
             f"Dataset {dataset.get('name')} ({dataset.get('train')} train / "
             f"{dataset.get('validation')} validation / {dataset.get('test')} test), "
             f"{document['seeds']} seed(s) per point, targets {', '.join(targets)}; "
             f"{document['seconds']:.0f} s. Arms are picked on validation top-1 and quoted on "
             "test top-1; a difference is named only when McNemar's exact test on the same "
             "test images gives p < 0.05 for every seed and the order holds in every seed.",
             "", "## The answer", ""]
    for summary in document["summary"].values():
        lines.append(f"- **{summary['text']}**")
        if summary["crossings"]:
            lines.append(f"  - the pick changes: {'; '.join(summary['crossings'])}")
    lines += ["", "Per level:", ""]
    for answer in document["answers"]:
        text = f"- {answer['text']}"
        if answer.get("distillation"):
            text += f"; {answer['distillation']['text']}"
        for gain in answer.get("hardware_aware") or []:
            text += f"; {gain['text']}"
        if answer["arms_off_level"]:
            text += (f" (more than 10% off the level, by MACs or for a hardware-aware arm by "
                     f"its measured cost: {', '.join(answer['arms_off_level'])})")
        lines.append(text)
    header = ["arm", "level", "seed", "MACs", "params", "bytes", "top-1 val", "top-1 test",
              *[f"{t} latency (ms)" for t in targets], *[f"{t} budget" for t in targets]]
    lines += ["", "## Every point", "", "| " + " | ".join(header) + " |",
              "|" + "|".join("---" for _ in header) + "|"]
    for point in document["points"]:
        if point.get("error"):
            lines.append(f"| {point['arm']} | {point['level']} | {point['seed']} | "
                         f"refused: {point['error']} |")
            continue
        budget = ["passed" if point["budget"][t]["passed"] else "BROKEN" for t in targets]
        cells = [point["arm"], point["level"], str(point["seed"]), f"{point['macs']:,}",
                 f"{point['params']:,}", f"{point['bytes']:,}", _percent(point["top1_val"]),
                 _percent(point["top1_test"]),
                 *[_latency_cell(point["latency"].get(t)) for t in targets], *budget]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += cost_went_lines(document)
    lines += ["", "## Fronts", ""]
    lines += [f"![front on {t}](front_{t}.png)" for t in targets] + ["![front by MACs]("
                                                                      "front_macs.png)", ""]
    return "\n".join(lines)


def _first_seed(document: dict[str, Any], arm: str, level: str) -> dict[str, Any] | None:
    found = [p for p in document["points"] if p["arm"] == arm and p["level"] == level
             and not p.get("error")]
    return min(found, key=lambda p: p["seed"]) if found else None


def _layer_rows(point: dict[str, Any]) -> list[str]:
    budget = point["prune_budget"]
    unit = budget["unit"]
    cells = (lambda v: f"{v:,.0f}") if unit == "instructions" else (lambda v: f"{v:.4f}")
    lines = [f"{point['arm']} (seed {point['seed']}): {cells(budget['measured'])} {unit} "
             f"measured on {budget['target']}, {100 * budget['of_limit']:.1f}% of its budget "
             f"{cells(budget['limit_in_unit'])}", "",
             f"| layer | channels | {unit} unpruned | {unit} pruned | cut | share |",
             "|---|---|---|---|---|---|"]
    for row in budget["layers"]:
        channels = ("" if row["channels_before"] is None
                    else f"{row['channels_before']} → {row['channels_after']}")
        lines.append(f"| {row['layer']} | {channels} | {cells(row['cost_before'])} | "
                     f"{cells(row['cost_after'])} | {100 * row['cut']:.0f}% | "
                     f"{100 * row['share_after']:.1f}% |")
    return lines


def _op_rows(aware: dict[str, Any], uniform: dict[str, Any], target: str) -> list[str]:
    ops_aware, ops_uniform = aware["ops"].get(target), uniform["ops"].get(target)
    if not ops_aware or not ops_uniform or len(ops_aware) != len(ops_uniform):
        return []
    lines = ["", f"Op by op on {target} (instructions), {uniform['arm']} against "
             f"{aware['arm']}:", "",
             f"| op | {uniform['arm']} output | {uniform['arm']} | {aware['arm']} output | "
             f"{aware['arm']} |", "|---|---|---|---|---|"]
    for first, second in zip(ops_uniform, ops_aware, strict=True):
        def shape(row: dict[str, Any]) -> str:
            return "x".join(str(d) for d in (row.get("output_shape") or [])[1:])

        lines.append(f"| {first['name']} | {shape(first)} | {_count(first)} "
                     f"| {shape(second)} | {_count(second)} |")
    return lines


def _count(row: dict[str, Any]) -> str:
    return f"{row['instructions']:,}" if row.get("instructions") else "-"


def cost_went_lines(document: dict[str, Any]) -> list[str]:
    """Per level, each hardware-aware arm's layers (channels and cost before and after
    pruning) and, where the target counts them, its ops beside its uniform arm's."""
    lines: list[str] = []
    for level in document["levels"]:
        for aware_arm, uniform_arm in UNIFORM_OF.items():
            aware = _first_seed(document, aware_arm, level["label"])
            if aware is None or not aware.get("prune_budget"):
                continue
            lines += ["", f"### {aware_arm} at {level['label']}", "", *_layer_rows(aware)]
            uniform = _first_seed(document, uniform_arm, level["label"])
            if uniform is not None:
                lines += _op_rows(aware, uniform, aware["prune_budget"]["target"])
    return ["", "## Where the cost went", *lines] if lines else []


def _curves(grouped: list[ArmAtLevel], x_of: Any) -> dict[str, list[plots.CurvePoint]]:
    curves: dict[str, list[plots.CurvePoint]] = {}
    for candidate in grouped:
        x = x_of(candidate)
        if not candidate.measured or x is None:
            continue
        spread = candidate.spread("top1_test")
        curves.setdefault(candidate.arm, []).append(
            plots.CurvePoint(x, spread.mean, spread.low, spread.high))
    return curves


def write_study(study: Study, dist_dir: Path) -> list[Path]:
    folder = Path(dist_dir) / STUDY_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    document = study_document(study)
    atomic_write_json(folder / STUDY_JSON, document)
    atomic_write_text(folder / STUDY_MD, render_markdown(document))
    paths = [folder / STUDY_JSON, folder / STUDY_MD]
    grouped = group(study.points)
    dataset = study.dataset.get("name")
    figures = {f"front_{t}.png": (_curves(grouped, lambda c, t=t: c.latency_ms(t)),
                                  f"latency on {t} (ms)") for t in study.targets}
    figures["front_macs.png"] = (_curves(grouped, lambda c: c.macs), "MACs")
    for name, (curves, x_label) in figures.items():
        if curves:
            atomic_write_bytes(folder / name, plots.study_front_png(
                curves, x_label, f"{dataset}: test top-1 against {x_label}"))
            paths.append(folder / name)
    return paths
