"""Planners: decomposition strategies that turn tasks into validated plans."""
