"""Squat analysis: keypoint tracks -> smoothing -> angles -> repetitions -> feedback (see analyze.py)."""
