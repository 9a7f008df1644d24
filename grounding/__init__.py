"""Grounding stage: per-video snippet similarity graphs and connected-component AVG labels."""
