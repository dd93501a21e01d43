"""Scripted (non-learned) controllers for the envs: baselines, demonstrations and sanity checks of a task."""
