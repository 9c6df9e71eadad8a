"""Structured channel pruning: dependency groups, importance criteria, selection, surgery;
plus TensorFlow Model Optimization's magnitude and 2:4 modes for comparison. What the pruner
knows about each layer type is one table (layer_rules.py); `register_layer_rule` adds one."""

from pipeline.pruning.channel import GroupDecision, PrunePlan, plan_pruning, prune_channels
from pipeline.pruning.criteria import CRITERIA, get_criterion
from pipeline.pruning.graph import ChannelGroup, DependencyGraph, analyse
from pipeline.pruning.layer_rules import (
    LAYER_RULES,
    LayerRule,
    barrier_rule,
    channelwise_rule,
    coupling_rule,
    merge_rule,
    per_channel_rule,
    producer_rule,
    register_layer_rule,
)
from pipeline.pruning.prunability import check_prunable
from pipeline.pruning.selection import SelectionRule, select_channels
from pipeline.pruning.surgery import apply_keep

__all__ = [
    "CRITERIA", "LAYER_RULES", "ChannelGroup", "DependencyGraph", "GroupDecision", "LayerRule",
    "PrunePlan", "SelectionRule", "analyse", "apply_keep", "barrier_rule", "channelwise_rule",
    "check_prunable", "coupling_rule", "get_criterion", "merge_rule", "per_channel_rule",
    "plan_pruning", "producer_rule", "prune_channels", "register_layer_rule", "select_channels",
]
