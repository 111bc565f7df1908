"""Stacked training: many runs of one architecture trained together as one vectorised model."""
from .trainer import GroupResult, GroupTimings, StackOptions, auto_vector_width, train_group

__all__ = ["GroupResult", "GroupTimings", "StackOptions", "auto_vector_width", "train_group"]
