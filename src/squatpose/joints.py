"""The six lower-body joints: the one place that defines their order, names and constants."""

import numpy as np
import pandas as pd

NAMES: tuple[str, ...] = (
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_JOINTS = len(NAMES)
# Column headings of the results table.
SHORT_NAMES: dict[str, str] = {"left_hip": "LHip", "right_hip": "RHip", "left_knee": "LKnee",
                               "right_knee": "RKnee", "left_ankle": "LAnk", "right_ankle": "RAnk"}
# COCO's 17 person keypoints, in COCO's order (written by converters such as `import-lsp`).
COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", *NAMES,
)
# Index of each joint in COCO's 17-keypoint list.
COCO_INDEX: tuple[int, ...] = tuple(COCO_KEYPOINTS.index(n) for n in NAMES)
# Index of the mirror joint: a horizontal flip swaps left and right.
FLIP_INDEX: tuple[int, ...] = (1, 0, 3, 2, 5, 4)
# Edges drawn in overlays: pelvis, thighs, shins.
SKELETON: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (2, 4), (1, 3), (3, 5))
# COCO's OKS sigmas for these joints (hips, knees, ankles).
OKS_SIGMAS: tuple[float, ...] = (0.107, 0.107, 0.087, 0.087, 0.089, 0.089)

KEYPOINT_COLUMNS: tuple[str, ...] = tuple(f"{n}_{c}" for n in NAMES for c in "xyv")


def keypoints_from_table(table: pd.DataFrame) -> np.ndarray:
    """The (N, 6, 3) float32 array of (x, y, v) from a person table's keypoint columns."""
    return table[list(KEYPOINT_COLUMNS)].to_numpy(np.float32).reshape(-1, NUM_JOINTS, 3)


def keypoints_to_columns(keypoints: np.ndarray) -> dict[str, np.ndarray]:
    """The inverse of `keypoints_from_table`: column name -> values, for a DataFrame."""
    flat = np.asarray(keypoints, np.float32).reshape(-1, NUM_JOINTS * 3)
    return {name: flat[:, i] for i, name in enumerate(KEYPOINT_COLUMNS)}
