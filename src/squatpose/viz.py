"""Pictures a person can look at: joints on crops, heatmaps over a crop."""

import cv2
import numpy as np

from squatpose.joints import NAMES, SKELETON

GT_COLOR = (0, 200, 0)  # RGB
PRED_COLOR = (230, 30, 30)


def draw_joints(image: np.ndarray, kp: np.ndarray, color: tuple[int, int, int],
                visible: np.ndarray | None = None, radius: int = 3) -> np.ndarray:
    """Skeleton and joints (K, 2) drawn on a copy of an RGB image; joints not `visible` are left out."""
    out = image.copy()
    ok = np.ones(len(kp), bool) if visible is None else np.asarray(visible, bool)
    pts = [(int(round(x)), int(round(y))) for x, y in np.asarray(kp)[:, :2]]
    for a, b in SKELETON:
        if ok[a] and ok[b]:
            cv2.line(out, pts[a], pts[b], color, 1, cv2.LINE_AA)
    for p, shown in zip(pts, ok):
        if shown:
            cv2.circle(out, p, radius, color, -1, cv2.LINE_AA)
    return out


def keypoint_grid(crops: np.ndarray, pred: np.ndarray, gt: np.ndarray, cols: int = 8) -> np.ndarray:
    """Crops (N, H, W, 3) with ground truth (green, labeled joints) and predictions (red), tiled."""
    tiles = [draw_joints(draw_joints(c, g, GT_COLOR, g[:, 2] > 0), p, PRED_COLOR)
             for c, p, g in zip(crops, pred, gt)]
    h, w = crops.shape[1:3]
    rows = -(-len(tiles) // cols)
    grid = np.zeros((rows * h, min(cols, len(tiles)) * w, 3), np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = t
    return grid


def heatmap_panels(crop: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """One crop repeated with each joint's heatmap (K, h, w) overlaid in colour, each scaled to
    its own peak (named with the peak value, the joint's confidence)."""
    h, w = crop.shape[:2]
    panels = []
    for name, hm in zip(NAMES, heatmaps):
        peak = float(hm.max())
        up = cv2.resize(np.clip(hm / max(peak, 1e-6), 0, 1).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_LINEAR)
        color = cv2.applyColorMap((up * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        panel = (0.5 * crop + 0.5 * color).astype(np.uint8)
        cv2.putText(panel, f"{name} {peak:.2f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(panel)
    return np.concatenate(panels, axis=1)


def write_png(path, rgb: np.ndarray) -> None:
    """Save an RGB image as PNG, atomically."""
    from squatpose.atomic import atomic_path

    with atomic_path(path) as tmp:
        ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        tmp.write_bytes(data.tobytes())
