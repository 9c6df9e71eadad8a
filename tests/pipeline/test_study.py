"""The study: its statistics and decision on numbers made here (pure), its levels on real
zoo models, and one small real study end to end (host and the emulated Cortex-M4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from devices.errors import ConfigError
from pipeline.config import STUDY_ARMS, load_config, with_values
from pipeline.study.answer import answer_study, choose, group
from pipeline.study.arms import HARDWARE_ARMS
from pipeline.study.points import Point, learnt_from_teacher
from pipeline.study.statistics import compare_seeds, mcnemar_exact
from tests.system_tools import NEEDS_MCU

TEST_IMAGES = 1000


def _correct(accuracy: float, seed: int, flip: int = 0) -> np.ndarray:
    """Per-image correctness with `accuracy`; `flip` extra images made right."""
    rng = np.random.default_rng(seed)
    correct = rng.random(TEST_IMAGES) < accuracy
    wrong = np.flatnonzero(~correct)
    correct[wrong[:flip]] = True
    return correct


def _point(arm: str, correct: np.ndarray, *, val: float, seed: int = 0, passed: bool = True,
           latency: float = 1.0, level: str = "1/4") -> Point:
    record = {"arm": arm, "level": level, "seed": seed, "macs": 1000, "params": 10,
              "bytes": 100, "top1_val": val, "top1_test": float(np.mean(correct)),
              "latency": {"mcu": {"ms": latency}},
              "budget": {"mcu": {"passed": passed, "violations": [] if passed else ["x"]}},
              "error": None}
    return Point(record, test_correct=correct)


def test_mcnemar_exact_matches_the_binomial_tail() -> None:
    base = np.zeros(20, bool)
    better = base.copy()
    better[:5] = True  # 5 discordant images, all one way: 2 * (1/2)^5
    assert mcnemar_exact(better, base) == pytest.approx(0.0625)
    mixed = base.copy()
    mixed[:9] = True
    other = base.copy()
    other[9] = True  # 9 against 1: 2 * (C(10,0) + C(10,1)) / 2^10
    assert mcnemar_exact(mixed, other) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(base, base) == 1.0
    with pytest.raises(ValueError, match="shape"):
        mcnemar_exact(base, base[:5])


def test_a_budget_only_one_arm_meets_picks_that_arm() -> None:
    base = _correct(0.9, 0)
    candidates = group([
        _point("distill", _correct(0.95, 1), val=0.96, passed=False),
        _point("prune", base, val=0.90, passed=True),
        _point("scratch", _correct(0.93, 2), val=0.94, passed=False),
    ])
    answer = choose(candidates, "mcu", "1/4 on mcu")
    assert answer["pick"]["arm"] == "prune" and answer["runner_up"] is None
    assert "the only arm meeting the budget" in answer["text"]


def test_arms_differing_on_a_handful_of_images_tie_within_noise() -> None:
    seeds = [0, 1]
    points = []
    for seed in seeds:
        base = _correct(0.9, 10 + seed)
        points.append(_point("scratch", base, val=0.900, seed=seed))
        points.append(_point("distill", _correct(0.9, 10 + seed, flip=3), val=0.905, seed=seed))
    answer = choose(group(points), "mcu", "1/4 on mcu")
    assert answer["pick"]["arm"] == "distill" and answer["runner_up"]["arm"] == "scratch"
    assert answer["distinguishable"] is False and answer["p_value"] == pytest.approx(0.25)
    assert "tie within noise" in answer["text"] and "p = 0.25" in answer["text"]


def test_a_clear_difference_in_every_seed_names_a_winner() -> None:
    points = []
    for seed in (0, 1):
        base = _correct(0.8, 20 + seed)
        points.append(_point("scratch", base, val=0.80, seed=seed))
        points.append(_point("distill", _correct(0.8, 20 + seed, flip=40), val=0.84, seed=seed))
    answer = choose(group(points), "mcu", "1/4 on mcu")
    assert answer["distinguishable"] is True and answer["p_value"] < 1e-6
    assert "distill beats scratch" in answer["text"]


def test_a_validation_pick_beaten_on_test_is_not_called_a_winner() -> None:
    base = _correct(0.8, 30)
    points = [_point("distill", base, val=0.90), _point("prune", _correct(0.8, 30, flip=40),
                                                          val=0.85)]
    answer = choose(group(points), "mcu", "1/4 on mcu")
    assert answer["pick"]["arm"] == "distill" and answer["distinguishable"] is False
    assert "validation and test disagree" in answer["text"]


def test_one_seed_against_the_order_makes_it_a_tie() -> None:
    first = compare_seeds([_correct(0.8, 1, flip=50), _correct(0.8, 2)],
                          [_correct(0.8, 1), _correct(0.8, 2, flip=50)])
    assert not first.distinguishable and not first.reversed


def test_the_summary_says_where_the_pick_changes() -> None:
    points = [_point("distill", _correct(0.9, 1), val=0.95, level="1/2"),
              _point("prune", _correct(0.9, 2), val=0.90, level="1/2"),
              _point("distill", _correct(0.9, 3), val=0.80, level="1/4"),
              _point("prune", _correct(0.9, 4), val=0.85, level="1/4")]
    result = answer_study(points, [("1/2", 1000), ("1/4", 1000)], ["mcu"])
    assert [a["pick"]["arm"] for a in result["answers"]] == ["distill", "prune"]
    assert result["summary"]["mcu"]["crossings"] == ["distill at 1/2 -> prune at 1/4"]
    assert result["summary"]["mcu"]["pick"]["arm"] == "distill"  # best validation overall


def test_a_point_is_marked_as_learning_from_the_teacher_only_by_its_records() -> None:
    distilled = {"loss": "kd"}
    on_labels = {"loss": "labels"}
    assert not learnt_from_teacher(on_labels, {"method": "none"})
    assert learnt_from_teacher(distilled, {"method": "none"})
    teacher_pruned = {"method": "channel", "source": "teacher"}
    assert not learnt_from_teacher(distilled, teacher_pruned | {"finetune": "finetune"})
    assert learnt_from_teacher(distilled, teacher_pruned | {"finetune": "kd"})
    assert learnt_from_teacher(distilled, {"method": "channel", "source": "student",
                                           "finetune": "finetune"})


def test_study_settings_are_checked() -> None:
    config = load_config(overrides=["study.levels=1/2,0.125", "study.seeds=3"])
    assert config.study.level_fractions() == (0.5, 0.125)
    assert config.study.arms == STUDY_ARMS
    with pytest.raises(ConfigError, match=r"study.levels item '3/2' = 1.5 must be above 0"):
        load_config(overrides=["study.levels=3/2"])
    with pytest.raises(ConfigError, match="study.levels item 'half' is not a fraction"):
        load_config(overrides=["study.levels=half"])
    with pytest.raises(ConfigError, match='student.loss = "labels" uses no teacher'):
        with_values(config, {"student.loss": "labels"})  # the default prune.finetune is kd


def test_the_prune_ratio_solver_inverts_a_macs_curve() -> None:
    from pipeline.study.levels import MAX_PRUNE_RATIO, solve_prune_ratio

    quadratic = lambda ratio: (1.0 - ratio) ** 2  # noqa: E731
    assert solve_prune_ratio(0.25, quadratic) == pytest.approx(0.5, abs=2e-3)
    assert solve_prune_ratio(1.0, quadratic) == 0.0
    assert solve_prune_ratio(1e-6, quadratic) == MAX_PRUNE_RATIO


@pytest.mark.slow
def test_levels_are_reached_by_width_and_by_ratio_on_real_models() -> None:
    from models.complexity import count_macs
    from pipeline.data import load_dataset
    from pipeline.stages.train import build_for
    from pipeline.study.arms import ARMS, arm_overrides
    from pipeline.study.levels import MAC_TOLERANCE, LevelCost, plan_levels, pruned_macs_fraction

    config = load_config()
    dataset = load_dataset(config.data)
    teacher_macs = count_macs(build_for(config.teacher, dataset))
    levels = [("1/4", 0.25), ("1/16", 0.0625)]
    cost = LevelCost("mcu", "instructions", 4e6)  # the hardware-aware arms' level
    for (_, fraction), plan in zip(levels, plan_levels(config, dataset, levels,
                                                       teacher_macs, cost)):
        student = with_values(config, {"student.width": plan.student_width}).student
        reached = count_macs(build_for(student, dataset))
        assert abs(reached - plan.macs) <= MAC_TOLERANCE * plan.macs
        pruned = pruned_macs_fraction(config.teacher, config.prune, dataset)
        assert abs(pruned(plan.teacher_prune_ratio) - fraction) <= MAC_TOLERANCE * fraction
        for arm in ARMS:  # every arm's overrides make a valid config
            point = with_values(config, arm_overrides(arm, plan, config, seed=1))
            assert point.student.seed == 1
        prune_only = with_values(config, arm_overrides("prune", plan, config, seed=0)).prune
        assert (prune_only.source, prune_only.finetune) == ("teacher", "finetune")
        aware = with_values(config, arm_overrides("prune-hw", plan, config, seed=0)).prune
        assert (aware.source, aware.budget.target) == ("teacher", "mcu")
        assert aware.budget.instructions == round(fraction * 4e6)


UNIFORM_ARMS = tuple(arm for arm in STUDY_ARMS if arm not in HARDWARE_ARMS)


def _study(tiny_build: dict, dist, target_names: tuple[str, ...], echo,
           arms: tuple[str, ...] = UNIFORM_ARMS) -> tuple:
    from pipeline.deploy import load_target
    from pipeline.study.run import run_study

    config = with_values(tiny_build["config"], {"study.levels": ("1/4",), "study.seeds": 1,
                                                "study.arms": arms})
    targets = [load_target(name, config) for name in target_names]
    return config, run_study(config, targets, echo=echo, build_dir=tiny_build["build_dir"],
                             dist_dir=dist)


@pytest.fixture(scope="module")
def small_study(tiny_build: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real study of every arm at one level, one seed, profiled on the host, run twice:
    cold, then warm (every stage and profile from the caches)."""
    from pipeline.study.report import write_study

    dist = tmp_path_factory.mktemp("study-dist")
    cold_lines: list[str] = []
    config, study = _study(tiny_build, dist, ("host",), cold_lines.append)
    paths = write_study(study, dist)
    warm_lines: list[str] = []
    _, warm = _study(tiny_build, dist, ("host",), warm_lines.append)
    return {"study": study, "warm": warm, "paths": paths, "dist": dist, "config": config,
            "cold_lines": cold_lines, "warm_lines": warm_lines}


@pytest.mark.slow
def test_the_study_writes_its_files_and_every_arm_at_the_level(small_study: dict) -> None:
    folder = small_study["dist"] / "study"
    names = {path.name for path in small_study["paths"]}
    assert names == {"study.json", "study.md", "front_host.png", "front_macs.png"}
    document = json.loads((folder / "study.json").read_text())
    assert document["schema"] == "edge-study/1"
    points = document["points"]
    assert sorted(p["arm"] for p in points) == sorted(UNIFORM_ARMS)
    level = document["levels"][0]
    for point in points:
        assert point["error"] is None
        assert abs(point["macs"] - level["macs"]) <= 0.10 * level["macs"], point["arm"]
        assert 0.0 < point["top1_val"] <= 1.0 and 0.0 < point["top1_test"] <= 1.0
    answers = {a["target"]: a for a in document["answers"]}
    assert set(answers) == {"host"} and set(document["summary"]) == {"host"}
    markdown = (folder / "study.md").read_text()
    assert all(f"| {arm} | 1/4 | 0 |" in markdown for arm in UNIFORM_ARMS)
    assert (folder / "front_host.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_no_arm_has_a_teacher_unless_its_name_says_so(small_study: dict) -> None:
    records = {point.record["arm"]: point.record for point in small_study["study"].points}
    for arm, record in records.items():
        assert (record["teacher"] is not None) == (arm in ("distill", "prune+kd",
                                                           "distill+prune",
                                                           "distill+prune-hw")), arm
    assert (records["scratch"]["loss"], records["scratch"]["finetune"]) == ("labels", None)
    assert records["distill"]["loss"] == "kd"
    assert records["prune"]["finetune"] == "finetune"
    assert records["prune+kd"]["finetune"] == "kd"
    assert records["prune"]["pruned_from"] == records["prune+kd"]["pruned_from"]
    assert records["distill+prune"]["pruned_from"] not in (None, records["prune"]["pruned_from"])


def _assert_profiles_of_own_artifacts(study, dist, targets: tuple[str, ...]) -> None:
    from devices.fsutil import sha256_file

    shas = set()
    for point in study.points:
        record = point.record
        shas.add(record["artifact_sha256"])
        for target in targets:
            latency = record["latency"][target]
            assert latency["ms"] is not None and latency["ms"] > 0
            assert latency["artifact_sha256"] == record["artifact_sha256"]
            assert point.reports[target]["artifact"]["sha256"] == record["artifact_sha256"]
            shipped = [sha256_file(path) for path in
                       (dist / "study" / "points").glob(f"*/{target}/model_int8.tflite")]
            assert record["artifact_sha256"] in shipped
    assert len(shas) >= 4  # scratch and distill differ, the pruned arms differ from both


@pytest.mark.slow
def test_every_latency_is_a_profile_of_the_points_own_artifact(small_study: dict) -> None:
    _assert_profiles_of_own_artifacts(small_study["study"], small_study["dist"], ("host",))


@pytest.mark.slow
@NEEDS_MCU
def test_the_study_on_the_microcontroller_counts_each_points_instructions(
    small_study: dict, tiny_build: dict, tmp_path: Path,
) -> None:
    """The same points on the emulated Cortex-M4: every stage comes from the cache, only
    the microcontroller profiles run."""
    from pipeline.study.report import write_study

    lines: list[str] = []
    _, study = _study(tiny_build, tmp_path, ("host", "mcu"), lines.append)
    assert not any("running…" in line for line in lines)
    _assert_profiles_of_own_artifacts(study, tmp_path, ("host", "mcu"))
    for point in study.points:
        assert point.record["latency"]["mcu"]["instructions"] > 0  # exact, from the emulator
        assert point.record["latency"]["mcu"]["source"] == "instruction-count estimate"
    assert set(study.answers["summary"]) == {"host", "mcu"}
    paths = write_study(study, tmp_path)
    assert (tmp_path / "study" / "front_mcu.png") in paths


@pytest.mark.slow
@NEEDS_MCU
def test_the_hardware_aware_arms_reach_the_level_by_measured_cost(tiny_build: dict,
                                                                  tmp_path: Path) -> None:
    """prune-hw and distill+prune-hw at a quarter of the teacher's Cortex-M4 instructions,
    each against its uniform arm, with where the cost went in study.md."""
    from pipeline.study.report import write_study

    arms = ("prune", "distill+prune", "prune-hw", "distill+prune-hw")
    # the config's own budget sets the search's steps: one, on a quarter of the default's
    # images, keeps this test about the arms (the default config's study: README)
    few_steps = {"prune.budget": {"target": "mcu", "instructions": 1, "steps": 1,
                                  "step_samples": 256}}
    build = {**tiny_build, "config": with_values(tiny_build["config"], few_steps)}
    _, study = _study(build, tmp_path, ("mcu",), lambda _: None, arms)
    plan = study.plans[0]
    assert plan.cost is not None and plan.cost.target == "mcu"
    records = {point.record["arm"]: point.record for point in study.points}
    for arm in HARDWARE_ARMS:
        budget = records[arm]["prune_budget"]
        assert budget["limit"] == round(plan.budget)
        # under the budget, and close: a tiny model's layers cost coarse steps (the default
        # config's land within 2%, README)
        assert 0.95 <= budget["of_limit"] <= 1.0, arm
        deployed = records[arm]["latency"]["mcu"]["instructions"]
        assert abs(deployed - budget["measured"]) <= 40  # one timer tick
    answer = study.answers["answers"][0]
    assert answer["arms_off_level"] == []
    assert {gain["arm"]: gain["against"] for gain in answer["hardware_aware"]} == {
        "prune-hw": "prune", "distill+prune-hw": "distill+prune"}
    write_study(study, tmp_path)
    markdown = (tmp_path / "study" / "study.md").read_text()
    assert "## Where the cost went" in markdown and "### prune-hw at 1/4" in markdown
    assert "| block1_conv |" in markdown or "| conv" in markdown


@pytest.mark.slow
def test_a_warm_study_reruns_nothing_and_answers_the_same(small_study: dict) -> None:
    warm_lines = small_study["warm_lines"]
    assert not any("running…" in line for line in warm_lines)
    assert not any(line.strip().startswith("profile ") for line in warm_lines)
    assert any(line.strip().startswith("profile ") for line in small_study["cold_lines"])
    cold, warm = small_study["study"], small_study["warm"]
    assert [p.record for p in cold.points] == [p.record for p in warm.points]
    assert cold.answers == warm.answers


@pytest.mark.slow
def test_advise_prints_the_studys_one_line_answer(small_study: dict, tiny_build: dict,
                                                  capsys: pytest.CaptureFixture) -> None:
    from pipeline.cli import main

    overrides = [item for pair in [("--set", o) for o in tiny_build["overrides"]
                                   + ["study.levels=1/4", "study.seeds=1",
                                      f"study.arms={','.join(UNIFORM_ARMS)}"]]
                 for item in pair]
    code = main(["advise", "--target", "host", "--build-dir", str(tiny_build["build_dir"]),
                 "--dist-dir", str(small_study["dist"]), *overrides])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == small_study["study"].answers["summary"]["host"]["text"]
    assert code == 0 and last.startswith("host: ")


@pytest.mark.slow
def test_the_report_embeds_the_study(small_study: dict) -> None:
    import shutil

    from pipeline.report import write_reports

    dist = small_study["dist"]
    first = sorted((dist / "study" / "points").iterdir())[0]
    shutil.copytree(first / "host", dist / "host")  # one bundle, as `make deploy` leaves it
    result = write_reports(dist)
    markdown = result.markdown.read_text()
    summary = small_study["study"].answers["summary"]["host"]["text"]
    assert "## Distillation or pruning? The study" in markdown
    assert summary.replace("|", "\\|") in markdown
    assert "![front_host](study/front_host.png)" in markdown
    assert 'alt="study/front_host.png"' in result.html.read_text()


def test_a_config_with_its_own_budget_gives_it_to_the_hardware_aware_arms_alone() -> None:
    """A user's `prune.budget` sets the search's steps for prune-hw; the uniform and the
    student arms prune by ratio or not at all, as without it."""
    from pipeline.study.arms import ARMS
    from pipeline.study.levels import LevelCost, LevelPlan

    config = load_config(overrides=[
        'prune.budget={target="mcu", instructions=300000, steps=2, step_samples=64}'])
    plan = LevelPlan(fraction=0.25, label="1/4", teacher_macs=1_000_000, student_width=0.5,
                     teacher_prune_ratio=0.5, wide_student_width=0.7, student_prune_ratio=0.5,
                     cost=LevelCost(target="mcu", quantity="instructions", teacher=2_000_000))
    for arm in STUDY_ARMS:
        budget = with_values(config, ARMS[arm](plan, config)).prune.budget
        if arm in HARDWARE_ARMS:
            assert budget is not None and (budget.instructions, budget.steps,
                                           budget.step_samples) == (500_000, 2, 64), arm
        else:
            assert budget is None, arm
