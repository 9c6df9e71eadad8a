"""The cross-target report: `make report` -> dist/report.md, report.json, report.html and
PNG plots.

It reads dist/*/manifest.json and dist/*/latency_report.json and nothing else, so every
number it prints is a number a manifest or latency report holds. The only derived values
are ratios/differences between those numbers and the plots' hollow markers, which are
latency ESTIMATES (the measured latency scaled by the MACs ratio) kept apart under
`estimates` in report.json.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pipeline.plots as plots
from devices.artifact_kinds import artifact_kind
from devices.budget import read_report
from devices.bundle import LATENCY_REPORT, MANIFEST, Manifest, read_manifest
from devices.errors import ArtifactError
from devices.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from devices.text import optional

REPORT_SCHEMA = "edge-pipeline-report/1"
# manifest metrics key -> label, in the order the pipeline produces them
STAGES: tuple[tuple[str, str], ...] = (
    ("teacher", "teacher"),
    ("student_scratch", "student, no teacher"),
    ("student", "student, distilled"),
    ("pruned", "pruned"),
)
HOT_SPOT_ROWS = 8
STUDY_FOLDER = "study"  # dist/study/: `make study` writes it, the report embeds it
# A latency report's per-op profile (`ops`: the phone's benchmark_model table, the MCU's
# layer marks) gives each op's cost in one of these columns.
OP_COSTS = ("ms", "instructions")


@dataclass(frozen=True)
class TargetBundle:
    name: str
    manifest: Manifest
    latency: dict[str, Any] | None  # latency_report.json, None when not profiled


@dataclass(frozen=True)
class ReportResult:
    markdown: Path
    json: Path
    html: Path
    plots: tuple[Path, ...] = ()

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.markdown, self.json, self.html, *self.plots)


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""
    note: str = ""


# --- reading ------------------------------------------------------------------------------


def load_bundles(dist_dir: Path) -> list[TargetBundle]:
    dist_dir = Path(dist_dir)
    # hidden folders are scratch (a killed run's `.host.pid…tmp`), never targets
    folders = sorted(path.parent for path in dist_dir.glob(f"*/{MANIFEST}")
                     if not path.parent.name.startswith("."))
    if not folders:
        raise ArtifactError(f"no bundle with a {MANIFEST} under {dist_dir}/ (hint: run `make "
                            "artifacts` or `make deploy TARGET=…` before `make report`)")
    return [TargetBundle(
        name=folder.name, manifest=read_manifest(folder),
        latency=read_report(folder / LATENCY_REPORT) if (folder / LATENCY_REPORT).is_file()
        else None,
    ) for folder in folders]


# --- numbers ------------------------------------------------------------------------------


def latency_stat(report: dict[str, Any]) -> str:
    return str(report["budget"]["limits"].get("latency_stat", "median"))


def target_latency(report: dict[str, Any]) -> tuple[float | None, str]:
    """(latency in ms, where it comes from). A microcontroller report (one with an
    `instructions` section) holds instruction-count estimates of device time, not the
    emulator's wall clock; other emulated timings measure the emulator."""
    emulated = report["target"]["emulated"]
    instructions = report["instructions"]
    value = report["latency_ms"][latency_stat(report)]
    if instructions:
        value = value if value is not None else instructions["est_ms"]
        source = "instruction-count estimate"
    else:
        source = "emulated" if emulated else "measured"
    return (None if value is None else float(value)), source


def _final_stage(metrics: dict[str, Any]) -> str:
    pruned = metrics.get("pruned")
    if pruned and pruned.get("method") != "none":
        return "pruned"
    return "student" if metrics.get("student") else "teacher"


def _variant(key: str, label: str, stage: str, record: dict[str, Any], *, file: str | None,
             model: dict[str, Any], group: str) -> dict[str, Any]:
    return {
        "key": key, "label": label, "group": group, "stage": stage, "file": file,
        "format": record.get("format", "keras"), "precision": record.get("precision", "fp32"),
        "top1": record.get("top1"), "agreement": record.get("agreement"),
        "params": model.get("params"), "macs": model.get("macs"), "bytes": record.get("bytes"),
        "weight_bytes": record.get("weight_bytes"), "latency_ms": {}, "latency_source": {},
    }


def _groups(bundles: Sequence[TargetBundle]) -> dict[str, dict[str, Any]]:
    """config fingerprint -> metrics; targets built from one config share their metrics."""
    groups: dict[str, dict[str, Any]] = {}
    for bundle in bundles:
        groups.setdefault(bundle.manifest.config_fingerprint, bundle.manifest.metrics)
    return groups


def _prefix(groups: dict[str, Any], fingerprint: str) -> str:
    return "" if len(groups) == 1 else f"[{fingerprint[:8]}] "


def build_variants(bundles: Sequence[TargetBundle]) -> list[dict[str, Any]]:
    """One row per model and per artifact, with the latency of every target that ran it."""
    groups = _groups(bundles)
    variants: dict[str, dict[str, Any]] = {}
    for fingerprint, metrics in groups.items():
        prefix = _prefix(groups, fingerprint)
        final = _final_stage(metrics)
        for stage, label in STAGES:
            record = metrics.get(stage)
            if not record or (stage == "pruned" and final != "pruned"):
                continue
            key = f"{prefix}{stage}"
            variants[key] = _variant(key, f"{prefix}{label}", stage, record, file=None,
                                     model=record, group=fingerprint)
        for file, record in sorted((metrics.get("artifacts") or {}).items()):
            key = f"{prefix}{file}"
            variants[key] = _variant(key, f"{prefix}{final} · {file}", final, record, file=file,
                                     model=metrics.get(final) or {}, group=fingerprint)
    for bundle in bundles:
        if bundle.latency is None:
            continue
        fingerprint = bundle.manifest.config_fingerprint
        metrics = groups[fingerprint]
        artifact = bundle.latency.get("artifact") or {}
        key = f"{_prefix(groups, fingerprint)}{artifact.get('file')}"
        if key not in variants:  # e.g. a microcontroller's generated C sources
            final = _final_stage(metrics)
            record = {"top1": bundle.latency["accuracy"]["top1"],
                      "bytes": artifact.get("bytes"), "format": artifact.get("format"),
                      "precision": artifact.get("precision")}
            variants[key] = _variant(key, f"{_prefix(groups, fingerprint)}{final} · "
                                     f"{artifact.get('file')} ({bundle.name})", final, record,
                                     file=artifact.get("file"), model=metrics.get(final) or {},
                                     group=fingerprint)
        value, source = target_latency(bundle.latency)
        variants[key]["latency_ms"][bundle.name] = value
        variants[key]["latency_source"][bundle.name] = source
    return list(variants.values())


def _ratio(after: float | None, before: float | None) -> float | None:
    if after is None or before in (None, 0):
        return None
    return after / before


def _points(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else 100.0 * (after - before)


def _change(change: str, path: str, before: dict[str, Any], after: dict[str, Any],
            latency_ratio: float | None = None) -> dict[str, Any]:
    return {"change": change, "path": path,
            "top1_points": _points(after.get("top1"), before.get("top1")),
            "params_ratio": _ratio(after.get("params"), before.get("params")),
            "macs_ratio": _ratio(after.get("macs"), before.get("macs")),
            "bytes_ratio": _ratio(after.get("bytes"), before.get("bytes")),
            "latency_ratio": latency_ratio}


def _common_latency_ratio(after: dict[str, Any], before: dict[str, Any]) -> float | None:
    for target, value in after["latency_ms"].items():
        if value is not None and before["latency_ms"].get(target):
            return value / before["latency_ms"][target]
    return None


def build_effects(metrics: dict[str, Any], variants: Sequence[dict[str, Any]],
                  group: str) -> list[dict[str, Any]]:
    """What distillation, pruning, fine-tuning and quantization each changed (one config)."""
    effects = []
    teacher, scratch = metrics.get("teacher"), metrics.get("student_scratch")
    student, pruned = metrics.get("student"), metrics.get("pruned")
    if scratch and student:
        effects.append(_change("distillation", "student without teacher → distilled student",
                               scratch, student))
    if teacher and student:
        effects.append(_change("smaller architecture + distillation",
                               "teacher → distilled student", teacher, student))
    if pruned and pruned.get("method") != "none":
        source = pruned.get("source", "student")
        before = {"top1": pruned.get("top1_before_pruning"), "params": pruned.get("params_before"),
                  "macs": pruned.get("macs_before"), "bytes": pruned.get("bytes_before")}
        effects.append(_change(f"pruning ({pruned.get('method')}) + fine-tuning",
                               f"{source} → pruned", before, pruned))
        if pruned.get("top1_before_finetune") is not None:
            effects.append(_change("fine-tuning after pruning", "pruned → fine-tuned",
                                   {"top1": pruned["top1_before_finetune"]},
                                   {"top1": pruned.get("top1")}))
    artifacts = [v for v in variants if v["file"] and v["group"] == group]
    for variant in artifacts:
        reference = next((v for v in artifacts if v["format"] == variant["format"]
                          and v["precision"] == "fp32"), None)
        if reference is None or variant is reference:
            continue
        effects.append(_change(f"{variant['precision']} quantization ({variant['format']})",
                               f"{reference['file']} → {variant['file']}", reference, variant,
                               _common_latency_ratio(variant, reference)))
    return effects


def hot_spots(report: dict[str, Any], limit: int = HOT_SPOT_ROWS) -> list[dict[str, Any]]:
    """The costliest ops of the report's per-op profile, if it has one."""
    ops = report.get("ops") or []
    unit = next((column for column in OP_COSTS if ops and ops[0].get(column) is not None), None)
    if unit is None:
        return []
    rows = [{"op": str(op["name"]), "type": op["type"], "cost": float(op[unit]), "unit": unit,
             "share": op["share"]} for op in ops]
    return sorted(rows, key=lambda row: -row["cost"])[:limit]


def build_estimates(bundle: TargetBundle, variants: Sequence[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
    """Hollow plot markers: the other trained models at the measured artifact's ms per MAC
    (and bytes per parameter). Stand-ins, labelled so, never mixed with measurements."""
    measured = next((v for v in variants if v["latency_ms"].get(bundle.name) is not None), None)
    if measured is None or not measured["macs"] or not measured["params"]:
        return []
    latency = measured["latency_ms"][bundle.name]
    return [{"label": v["label"], "top1": v["top1"],
             "latency_ms": latency * v["macs"] / measured["macs"],
             "bytes": int(measured["bytes"] * v["params"] / measured["params"])
             if measured["bytes"] else None,
             "basis": f"{latency:.4g} ms × MACs / {measured['macs']:,} MACs of {measured['file']}"}
            for v in variants if v["file"] is None and v["group"] == measured["group"]
            and v["stage"] != measured["stage"] and v["macs"] and v["params"]
            and v["top1"] is not None]


def _target_record(bundle: TargetBundle) -> dict[str, Any]:
    report = bundle.latency
    record: dict[str, Any] = {"name": bundle.name, "profiled": report is not None,
                              "config_fingerprint": bundle.manifest.config_fingerprint,
                              "dataset": bundle.manifest.dataset}
    if report is None:
        return record
    value, source = target_latency(report)
    return record | {
        "adapter": report["target"]["adapter"],
        "emulated": report["target"]["emulated"],
        "artifact": report["artifact"], "runtime": report["runtime"],
        "latency_stat": latency_stat(report), "latency_ms": report["latency_ms"],
        "latency": value, "latency_source": source, "memory": report["memory"],
        "instructions": report["instructions"], "accuracy": report["accuracy"],
        "budget": report["budget"], "created": report["created"],
    }


def build_document(bundles: Sequence[TargetBundle]) -> dict[str, Any]:
    """report.json: every number copied from a manifest or latency report."""
    variants = build_variants(bundles)
    groups = _groups(bundles)
    first_group, first_metrics = next(iter(groups.items()))
    return {
        "schema": REPORT_SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "targets": [_target_record(bundle) for bundle in bundles],
        "variants": variants,
        "effects": build_effects(first_metrics, variants, first_group),
        "quantization": build_quantization(bundles),
        "hot_spots": {name: rows for name, rows in
                      ((b.name, hot_spots(b.latency or {})) for b in bundles) if rows},
        "estimates": {b.name: build_estimates(b, variants) for b in bundles
                      if b.latency is not None},
        "histories": {stage: (first_metrics.get(stage) or {}).get("history")
                      for stage, _ in STAGES
                      if (first_metrics.get(stage) or {}).get("history")},
    }


# --- tables -------------------------------------------------------------------------------


format_top1 = partial(optional, spec=".2%")
format_count = partial(optional, spec=",.0f")
format_ms = partial(optional, spec=".3f")
format_ratio = partial(optional, spec=".3g", suffix="×")
format_points = partial(optional, spec="+.2f")


def _budget_text(budget: dict[str, Any] | None) -> str:
    if not budget or budget.get("passed") is None:
        return "not checked"
    if budget["passed"]:
        return "passed"
    return "BROKEN: " + "; ".join(budget.get("violations") or [])


def targets_table(document: dict[str, Any]) -> Table:
    rows = []
    for target in document["targets"]:
        if not target["profiled"]:
            rows.append((target["name"], "–", "–", "–", "not profiled", "–", "–", "–",
                         "not checked"))
            continue
        runtime, memory = target["runtime"] or {}, target["memory"] or {}
        ram = memory.get("arena_bytes") and f"{memory['arena_bytes']:,} B arena" or (
            memory.get("peak_rss_mb") and f"{memory['peak_rss_mb']:.1f} MB RSS") or "–"
        stat = target["latency_stat"]
        latency = f"{format_ms(target['latency'])} ({stat}, {target['latency_source']})"
        rows.append((
            target["name"], target["adapter"] or "–", (target["artifact"] or {}).get("file", "–"),
            f"{runtime.get('name', '?')} {runtime.get('version', '')}".strip(),
            latency, format_ms((target["latency_ms"] or {}).get("p90")),
            format_top1((target["accuracy"] or {}).get("top1")), ram,
            _budget_text(target["budget"]),
        ))
    return Table(("target", "adapter", "artifact", "runtime", "latency (ms)", "p90 (ms)",
                  "top-1 on device", "RAM", "budget"), tuple(rows), "Targets")


def variants_table(document: dict[str, Any]) -> Table:
    targets = [t["name"] for t in document["targets"] if t["profiled"]]
    rows = tuple(
        (v["label"], v["format"] or "–", v["precision"] or "–", format_top1(v["top1"]),
         format_count(v["params"]), format_count(v["macs"]), format_count(v["bytes"]),
         format_count(v["weight_bytes"]),
         *(format_ms(v["latency_ms"].get(target)) for target in targets))
        for v in document["variants"])
    return Table(("variant", "format", "precision", "top-1", "params", "MACs", "bytes",
                  "weight bytes", *(f"{target} (ms)" for target in targets)), rows,
                 "Every variant",
                 "Keras rows are the trained models (bytes = .keras file); artifact rows are "
                 "what was exported, with params/MACs of the model they were exported from. "
                 "Weight bytes are the file's tensor data; the rest is format overhead (tables, "
                 "names, quantization scales), a few KB whatever the model's size.")


def effects_table(document: dict[str, Any]) -> Table:
    rows = tuple((e["change"], e["path"], format_points(e["top1_points"]),
                  format_ratio(e["params_ratio"]), format_ratio(e["macs_ratio"]),
                  format_ratio(e["bytes_ratio"]), format_ratio(e["latency_ratio"]))
                 for e in document["effects"])
    return Table(("change", "from → to", "top-1 (points)", "× params", "× MACs", "× bytes",
                  "× latency"), rows, "What distillation and pruning changed",
                 "× latency is shown only where both ends were profiled on the same target.")


def hot_spot_tables(document: dict[str, Any]) -> list[Table]:
    return [Table(("op", "type", "cost", "share"), tuple(
        (row["op"], row["type"], _cost(row["cost"], row["unit"]),
         "-" if row["share"] is None else f"{100 * row['share']:.1f}%") for row in rows),
        f"Hot spots: {target}")
        for target, rows in document["hot_spots"].items()]


def _cost(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if unit == "instructions" else f"{value:.4g} {unit}"


def study_tables(document: dict[str, Any]) -> list[Table]:
    """The study's answers (dist/study/, `make study`), when one was run."""
    study = document.get("study")
    if not study:
        return []
    summary = Table(("target", "answer"), tuple(
        (target, entry["text"]) for target, entry in study["summary"].items()),
        "Distillation or pruning? The study", "dist/study/study.md has every point.")
    levels = Table(("level", "target", "answer", "distillation over scratch"), tuple(
        (answer["level"], answer["target"], answer["text"],
         (answer.get("distillation") or {}).get("text", "-")) for answer in study["answers"]),
        "The study, per level")
    return [summary, levels]


def read_study(dist_dir: Path) -> dict[str, Any] | None:
    path = Path(dist_dir) / STUDY_FOLDER / "study.json"
    if not path.is_file():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    return {key: document[key] for key in ("summary", "answers", "targets")}


def study_images(dist_dir: Path, study: dict[str, Any] | None) -> dict[str, bytes]:
    if not study:
        return {}
    folder = Path(dist_dir) / STUDY_FOLDER
    names = [f"front_{target}.png" for target in study["targets"]] + ["front_macs.png"]
    return {f"{STUDY_FOLDER}/{name}": (folder / name).read_bytes() for name in names
            if (folder / name).is_file()}


# --- PTQ against QAT (quantize.method = "qat") ------------------------------------------

QAT_FILE = artifact_kind("tflite", "int8").file  # the file quantize.method = "qat" trains


def build_quantization(bundles: Sequence[TargetBundle]) -> list[dict[str, Any]]:
    """Per config built with QAT (metrics.qat): the int8 TFLite top-1 of post-training
    quantization of the final model and of the file QAT fine-tuned and ships (its validated
    record), on the same test split."""
    groups = _groups(bundles)
    rows = []
    for fingerprint, metrics in groups.items():
        qat = metrics.get("qat")
        if not qat:
            continue
        shipped = (metrics.get("artifacts") or {}).get(QAT_FILE) or {}
        qat_top1 = shipped.get("top1", qat.get("int8_top1"))
        rows.append({
            "group": fingerprint, "label": f"{_prefix(groups, fingerprint)}{_final_stage(metrics)}",
            "file": QAT_FILE, "float_top1": qat.get("float_top1"), "ptq_top1": qat.get("ptq_top1"),
            "qat_top1": qat_top1, "top1_points": _points(qat_top1, qat.get("ptq_top1")),
            "finetune": qat.get("finetune"), "epochs_run": qat.get("epochs_run"),
            "learning_rate": qat.get("learning_rate"),
        })
    return rows


def quantization_tables(document: dict[str, Any]) -> list[Table]:
    rows = tuple(
        (row["label"], row["file"], format_top1(row["float_top1"]), format_top1(row["ptq_top1"]),
         format_top1(row["qat_top1"]), format_points(row["top1_points"]),
         f"{optional(row['epochs_run'], 'd')} epochs {row['finetune'] or '–'}, learning rate "
         f"{optional(row['learning_rate'], 'g')}")
        for row in document.get("quantization") or ())
    if not rows:
        return []
    return [Table(("model", "file", "float (Keras)", "int8 PTQ", "int8 QAT", "QAT − PTQ (points)",
                   "QAT fine-tuning"), rows, "Post-training against quantization-aware int8",
                  "Validated top-1 on the test split of the final model's int8 TFLite file, "
                  "post-training quantized, and after quantization-aware training (the file "
                  "that ships). The int8 ONNX file is post-training quantized in both.")]


def all_tables(document: dict[str, Any]) -> list[Table]:
    return [targets_table(document), variants_table(document), effects_table(document),
            *hot_spot_tables(document), *study_tables(document),
            *quantization_tables(document)]


# --- rendering ----------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(document: dict[str, Any], plot_files: Sequence[str]) -> str:
    lines = ["# Edge deployment report", "", _summary_line(document), ""]
    for table in all_tables(document):
        lines += [f"## {table.title}", ""]
        lines.append("| " + " | ".join(_md_cell(h) for h in table.headers) + " |")
        lines.append("|" + "|".join("---" for _ in table.headers) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
        lines += ["", table.note, ""] if table.note else [""]
    if plot_files:
        lines += ["## Plots", ""]
        lines += [f"![{Path(name).stem}]({name})" for name in plot_files]
        lines.append("")
    return "\n".join(lines)


def _dataset_text(dataset: Any) -> str:
    if not isinstance(dataset, dict):
        return str(dataset)
    return (f"{dataset.get('name')} ({dataset.get('train')} train / {dataset.get('validation')} "
            f"validation / {dataset.get('test')} test)")


def _summary_line(document: dict[str, Any]) -> str:
    names = ", ".join(t["name"] for t in document["targets"])
    profiled = sum(1 for t in document["targets"] if t["profiled"])
    datasets = sorted({_dataset_text(t.get("dataset")) for t in document["targets"]})
    return (f"{len(document['targets'])} bundle(s) in dist/ ({names}), {profiled} profiled; "
            f"dataset {', '.join(datasets)}; generated {document['created']}.")


def render_html(document: dict[str, Any], images: dict[str, bytes]) -> str:
    parts = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">",
             "<title>Edge deployment report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
             "margin-bottom:1em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}"
             "th{background:#eee}img{max-width:100%}</style></head><body>",
             "<h1>Edge deployment report</h1>", f"<p>{html.escape(_summary_line(document))}</p>"]
    for table in all_tables(document):
        parts.append(f"<h2>{html.escape(table.title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in table.headers) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                  for row in table.rows]
        parts.append("</table>")
        if table.note:
            parts.append(f"<p><em>{html.escape(table.note)}</em></p>")
    if images:
        parts.append("<h2>Plots</h2>")
    for name, content in images.items():
        encoded = base64.b64encode(content).decode("ascii")
        parts.append(f"<figure><img alt=\"{html.escape(name)}\" "
                     f"src=\"data:image/png;base64,{encoded}\">"
                     f"<figcaption>{html.escape(name)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --- plots --------------------------------------------------------------------------------


def _pareto_points(document: dict[str, Any], targets: Sequence[str]) -> list[plots.ParetoPoint]:
    points = []
    for target in targets:
        for v in document["variants"]:
            value = v["latency_ms"].get(target)
            if value is not None and v["top1"] is not None:
                points.append(plots.ParetoPoint(v["label"], value, v["top1"], v["bytes"], True,
                                                target))
        points += [plots.ParetoPoint(e["label"], e["latency_ms"], e["top1"], e["bytes"], False,
                                     target) for e in document["estimates"].get(target, [])]
    return points


def render_plots(document: dict[str, Any]) -> dict[str, bytes]:
    """file name -> PNG bytes: pareto.png (every target), pareto_<target>.png, curves_<stage>."""
    profiled = [t["name"] for t in document["targets"] if t["profiled"] and t["latency"]]
    images: dict[str, bytes] = {}
    if profiled:
        images["pareto.png"] = plots.pareto_png(_pareto_points(document, profiled),
                                                "top-1 against latency, every target")
        for target in profiled:
            images[f"pareto_{target}.png"] = plots.pareto_png(
                _pareto_points(document, [target]), f"top-1 against latency on {target}")
    for stage, history in document["histories"].items():
        images[f"curves_{stage}.png"] = plots.curves_png(stage, history)
    return images


# --- entry point --------------------------------------------------------------------------


def write_reports(dist_dir: Path) -> ReportResult:
    """Read every dist/<target>/ bundle and write report.md/.json/.html and the plots."""
    dist_dir = Path(dist_dir)
    document = build_document(load_bundles(dist_dir))
    document["study"] = read_study(dist_dir)
    images = render_plots(document)
    document["plots"] = list(images)
    for name, content in images.items():
        atomic_write_bytes(dist_dir / name, content)
    embedded = images | study_images(dist_dir, document["study"])  # already on disk
    atomic_write_json(dist_dir / "report.json", document)
    atomic_write_text(dist_dir / "report.md", render_markdown(document, list(embedded)))
    atomic_write_text(dist_dir / "report.html", render_html(document, embedded))
    return ReportResult(dist_dir / "report.md", dist_dir / "report.json",
                        dist_dir / "report.html", tuple(dist_dir / name for name in images))
