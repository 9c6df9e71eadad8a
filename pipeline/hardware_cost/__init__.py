"""What a model costs on a target, measured per op: op signatures (devices/op_signature.py),
a lookup table of their measured costs (table.py) filled by per-target measurers
(measurers.py: the emulated Cortex-M4's exact instruction counts, the host's LiteRT
latency), predicted for any channel counts without converting (shape_model.py) and summed
with the invoke's own cost (cost_model.py). The prune stage's budget search
(pipeline/pruning/budget_search.py) decides with it; docs/architecture.md, "Pruning to a
measured budget"."""
