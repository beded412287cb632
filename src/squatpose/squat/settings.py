"""The settings of a squat analysis, in one object: the source of their defaults (the
`squatpose analyze` options read them from here)."""

from dataclasses import dataclass

from squatpose.errors import SquatposeError
from squatpose.squat.feedback import FeedbackRules
from squatpose.squat.reps import RepSettings
from squatpose.squat.smoothing import OneEuro

VIEWS = ("auto", "side", "front")


@dataclass(frozen=True)
class Settings:
    confidence: float = 0.3  # a joint whose heatmap peak is lower is not used
    view: str = "auto"  # auto | side | front
    smoothing: OneEuro = OneEuro()
    reps: RepSettings = RepSettings()
    rules: FeedbackRules = FeedbackRules()
    reacquire_s: float = 1.0  # with a detector: look for the person again after this long unseen

    def __post_init__(self):
        if self.view not in VIEWS:
            raise SquatposeError(f"view {self.view!r}: expected one of {', '.join(VIEWS)}")
        if not 0 <= self.confidence <= 1:
            raise SquatposeError(f"confidence {self.confidence}: expected a heatmap peak between 0 and 1")
