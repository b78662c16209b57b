"""The committed tiny GLM-Edge-V bundle (random weights, real architecture and layout) and helpers.

Regenerate it with the exporter (needs the export extra):
    edged models export --random-init --shape tiny --seed 0 --out tests/fixtures/glm-edge-v-tiny \
        --snapshot-out tests/fixtures/glm-edge-v-tiny-snapshot --reference --name glm-edge-v-tiny
    edged models quantize tests/fixtures/glm-edge-v-tiny
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edged.config.schema import CaptionerConfig

FIXTURES = Path(__file__).parent / "fixtures"
BUNDLE = FIXTURES / "glm-edge-v-tiny"
SNAPSHOT = FIXTURES / "glm-edge-v-tiny-snapshot"
# How far the fp32 logits of one input may differ between two machines. The same arithmetic summed in
# another order (SIMD width, FMA, libm) moves them by 4e-5 between AVX-512 and AVX2 and by 5.5e-4
# between AVX-512 and Arm NEON (emulated Cortex-A72 and A76); 1e-2 is the spec's limit against the
# torch reference. A golden fp32 token holds on every machine when its
# margin over the runner-up is wider than twice this, and the fixture's fp32 goldens all are (checked
# in test_glm_runtime), so tests may compare fp32 tokens exactly.
FP32_SPREAD = 1e-2


def goldens() -> dict[str, Any]:
    return dict(json.loads((BUNDLE / "manifest.json").read_text(encoding="utf-8"))["goldens"])


def config(**changes: Any) -> CaptionerConfig:
    """Settings the goldens were recorded with: one thread, greedy, no cache files in the fixture."""
    base = CaptionerConfig(
        path=BUNDLE,
        variant="fp32",
        threads=1,
        repetition_penalty=1.0,
        max_new_tokens=goldens()["max_new_tokens"],
        optimized_cache=False,
    )
    return dataclasses.replace(base, **changes)


def captioner(**changes: Any) -> Any:
    from edged.inference.glm_edge_v import GlmEdgeVCaptioner

    return GlmEdgeVCaptioner(config(**changes), warmup=False)
