"""Agents: planner / coordinator / worker roles and the pipeline graph (LangGraph)."""
