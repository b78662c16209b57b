"""`FrameAnalysis`: everything computed once per analysed frame of one camera.

Motion on low-resolution luma, the frame's fitness to be captioned (sharpness, flatness), the scene
signature for the near-duplicate gate, and a working-size copy with the privacy masks blanked: the
model and the snapshots only ever see masked pixels.
"""

from __future__ import annotations

from edged.analysis.history import AnalysedFrame, working_copy
from edged.analysis.masks import apply_masks
from edged.analysis.motion import MotionDetector, MotionResult
from edged.analysis.scene import frame_quality, scene_signature, signature_distance
from edged.config.schema import CameraConfig
from edged.sources.frame import Frame


class FrameAnalysis:
    """One camera's per-frame analysis (called on its analysis thread only)."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.masks = config.motion.masks
        self.motion = MotionDetector(config.motion)
        self.last_motion: MotionResult | None = None

    def analyse(self, frame: Frame) -> AnalysedFrame:
        result = self.motion.update(frame.image, frame.ts)
        self.last_motion = result
        image = working_copy(frame.image)
        if self.masks:
            image = apply_masks(image, self.masks)
            image.flags.writeable = False
        return AnalysedFrame(frame.camera, frame.seq, frame.ts, frame.wall_ts, frame.pts, image,
                             quality=frame_quality(image), motion_area=result.area, motion=result.motion,
                             calibrating=result.calibrating, signature=scene_signature(image, self.masks))

    @staticmethod
    def scene_distance(a: AnalysedFrame, b: AnalysedFrame) -> float:
        """How much of the scene changed between two analysed frames (0: the same scene)."""
        if a.signature is None or b.signature is None:
            return 1.0
        return signature_distance(a.signature, b.signature)
