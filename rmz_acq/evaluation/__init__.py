"""Scores against ground truth, simple baselines, and the evaluate command's report."""
