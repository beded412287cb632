"""The model shipped with squatpose: trained by scripts/train_shipped_model.py, described in
docs/MODEL_CARD.md, loaded (weights only) by `squatpose analyze` and `squatpose export` when no
model is named."""

from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "lower_body.pt"
