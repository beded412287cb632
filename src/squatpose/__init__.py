"""squatpose: 2D lower-body keypoints (hips, knees, ankles) and squat analysis."""

__version__ = "0.1.0"
