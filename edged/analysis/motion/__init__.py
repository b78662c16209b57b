"""Motion detection on low-resolution luma: the daemon's cheapest, most-used signal."""

from edged.analysis.motion.detector import MotionBox, MotionDetector, MotionResult

__all__ = ["MotionBox", "MotionDetector", "MotionResult"]
