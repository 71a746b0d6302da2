"""Bridges to other RL libraries (optional extras): :mod:`natpg.integrations.sb3` for Stable-Baselines3."""
