"""The study: "distillation or pruning?" answered by measurement. Five arms (arms.py) at
several compression levels (levels.py) and seeds, every point trained through the stage
cache, exported, validated and profiled on each target (points.py); the pick per level and
target made on validation top-1 and stated on test top-1 with a paired test (answer.py,
statistics.py); study.json, study.md and the fronts written by report.py; run.py ties them
together. README, "Distillation or pruning? The study"."""
