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


def draw_analysis(frame: np.ndarray, kp: np.ndarray, known: np.ndarray, box: np.ndarray,
                  lines: list[str], angles: dict[int, float]) -> np.ndarray:
    """A video frame with the person box, the known joints (K, 2) and skeleton, each knee's angle
    beside it (`angles`: joint index -> degrees) and text `lines` at the top left."""
    out = draw_joints(frame, kp, PRED_COLOR, known, radius=max(3, frame.shape[0] // 150))
    scale = max(0.5, frame.shape[0] / 900)
    x, y, w, h = (int(round(v)) for v in box)
    cv2.rectangle(out, (x, y), (x + w, y + h), (255, 255, 255), 1)
    for j, deg in angles.items():
        if known[j] and np.isfinite(deg):
            px, py = (int(round(v)) for v in kp[j])
            _text(out, f"{deg:.0f}", (px + 8, py), scale)
    for i, line in enumerate(lines):
        _text(out, line, (10, int(30 * scale) * (i + 1)), scale)
    return out


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    """White text with a dark outline, readable on any background."""
    thick = max(1, int(round(2 * scale)))
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def knee_angle_plot(path, t: np.ndarray, curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                    reps: list[tuple[float, float, float]], thresholds: dict[str, float], title: str) -> None:
    """PNG of knee angle over time: per curve (label -> (raw, smoothed, +-uncertainty)) the raw
    values faint, the smoothed ones solid inside a band of their uncertainty, each rep (start,
    bottom, end seconds) shaded with its bottom marked, and horizontal `thresholds` (label ->
    degrees) dashed. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from squatpose.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    for (label, (raw, smooth, unc)), color in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green")):
        ax.plot(t, raw, color=color, alpha=0.3, lw=1)
        if np.isfinite(unc).any():
            ax.fill_between(t, smooth - unc, smooth + unc, color=color, alpha=0.18, lw=0,
                            label=f"{label}: uncertainty (90%)")
        ax.plot(t, smooth, color=color, lw=2, label=label)
    for k, (a, b, e) in enumerate(reps, 1):
        ax.axvspan(a, e, color="tab:green", alpha=0.12)
        ax.axvline(b, color="tab:green", lw=1)
        ax.text(b, 5, f"rep {k}", ha="center", va="bottom", fontsize=8)
    for label, deg in thresholds.items():
        if np.isfinite(deg):
            ax.axhline(deg, color="grey", ls="--", lw=1)
            ax.text(t[-1] if len(t) else 0, deg, f" {label}", va="center", fontsize=8, color="grey")
    ax.set(xlabel="time (s)", ylabel="knee angle (deg, 180 = straight)", ylim=(0, 185), title=title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
