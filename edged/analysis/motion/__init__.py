"""Motion detection on low-resolution luma: the daemon's cheapest, most-used signal (see `detector`)."""

from edged.analysis.motion.detector import MotionBox, MotionDetector, MotionResult
from edged.analysis.motion.intervals import MERGE_GAP, IntervalBuilder, motion_intervals

__all__ = ["MERGE_GAP", "IntervalBuilder", "MotionBox", "MotionDetector", "MotionResult", "motion_intervals"]
