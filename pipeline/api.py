"""The pipeline from Python, for notebooks: `from pipeline import Pipeline, load_config`.

The same stages, cache, bundles and reports as the CLI (`make deploy` and this call the same
functions), with typed results instead of printed ones:

    pipeline = Pipeline(load_config(overrides=["student.epochs=4"]))
    run = pipeline.run()                  # every stage, cached in build/cache
    run.top1("pruned")
    outcome = pipeline.deploy("host")     # bundle, profile, budget check
    pipeline.report().show()              # the report's tables and plots, inline
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import PipelineConfig
from pipeline.profile import DeployOutcome

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    """What `Pipeline.run()` computed or found cached, stage by stage."""

    records: dict[str, dict[str, Any]]  # stage -> its record (metrics, files, timings)
    cache_hits: dict[str, bool]
    seconds: float

    def top1(self, stage: str) -> float | None:
        """The stage's test top-1 (None for the stages that train nothing)."""
        return self.records[stage].get("top1")


@dataclass(frozen=True)
class Report:
    """The cross-target report of dist/: its files, tables and plots."""

    markdown: Path
    html: Path
    plots: tuple[Path, ...]
    tables: tuple[Any, ...]  # pipeline.report.Table

    def show(self) -> None:
        """Render the tables and plots in a notebook (IPython), or print the tables."""
        try:
            from IPython.display import Image, Markdown, display
        except ImportError:
            print(self.markdown.read_text(encoding="utf-8"))
            return
        display(Markdown(self.markdown.read_text(encoding="utf-8")))
        for plot in self.plots:
            display(Image(filename=str(plot)))


@dataclass
class Pipeline:
    config: PipelineConfig
    build_dir: Path = Path("build")
    dist_dir: Path = Path("dist")
    echo: Echo = field(default=print)

    def run(self, until: str | None = None, force: Sequence[str] = ()) -> Run:
        from pipeline.runner import Runner

        result = Runner(self.config, Path(self.build_dir), force=tuple(force),
                        echo=self.echo).run(until=until)
        return Run({name: outcome.record for name, outcome in result.outcomes.items()},
                   {name: outcome.cache_hit for name, outcome in result.outcomes.items()},
                   result.seconds)

    def deploy(self, target: str = "host") -> DeployOutcome:
        """Every stage (cached), the bundle in dist/<target>, profiling, the budget check."""
        from pipeline.deploy import deploy

        return deploy(self.config, target, build_dir=Path(self.build_dir),
                      dist_dir=Path(self.dist_dir), echo=self.echo)

    def report(self) -> Report:
        from pipeline.report import all_tables, write_reports

        result = write_reports(Path(self.dist_dir))
        document = json.loads(result.json.read_text(encoding="utf-8"))
        return Report(result.markdown, result.html, result.plots,
                      tuple(all_tables(document)))
