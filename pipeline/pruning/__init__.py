"""Structured channel pruning: dependency groups, importance criteria, selection, surgery;
plus TensorFlow Model Optimization's magnitude and 2:4 modes for comparison."""

from pipeline.pruning.channel import GroupDecision, PrunePlan, plan_pruning, prune_channels
from pipeline.pruning.criteria import CRITERIA, get_criterion
from pipeline.pruning.graph import ChannelGroup, DependencyGraph, analyse
from pipeline.pruning.selection import SelectionRule, select_channels
from pipeline.pruning.surgery import apply_keep

__all__ = [
    "CRITERIA", "ChannelGroup", "DependencyGraph", "GroupDecision", "PrunePlan",
    "SelectionRule", "analyse", "apply_keep", "get_criterion", "plan_pruning",
    "prune_channels", "select_channels",
]
