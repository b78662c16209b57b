"""The torch reference: native transformers classes plus edged's own GLM-Edge-V adapter.

`GlmForCausalLM` runs the language model (transformers honours `partial_rotary_factor: 1.0` and the
interleaved rotary), `SiglipVisionModel` the vision tower; the adapter below mirrors the remote
code's `siglip.Adapter` / `siglip.GLU` with the same parameter names, so checkpoint tensors load
by name. Weights load strictly: a missing or unexpected tensor is an error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from edged.export.source_config import SourceConfig
from edged.export.weights import ADAPTER_PREFIX, IGNORED, VIT_PREFIX, SnapshotWeights, WeightError


class GLU(nn.Module):
    """linear -> LayerNorm -> GELU(erf) -> silu(gate) * up -> down."""

    def __init__(self, hidden: int, ffn: int) -> None:
        super().__init__()
        self.linear_proj = nn.Linear(hidden, hidden, bias=False)
        self.norm1 = nn.LayerNorm(hidden)
        self.dense_h_to_4h = nn.Linear(hidden, ffn, bias=False)
        self.gate_proj = nn.Linear(hidden, ffn, bias=False)
        self.dense_4h_to_h = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.norm1(self.linear_proj(x)))
        out: torch.Tensor = self.dense_4h_to_h(nn.functional.silu(self.gate_proj(x)) * self.dense_h_to_4h(x))
        return out


class Adapter(nn.Module):
    """SigLIP rows -> 2x2 stride-2 convolution -> GLU -> [boi, rows, eoi]."""

    def __init__(self, vision_hidden: int, hidden: int, ffn: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(vision_hidden, hidden, kernel_size=2, stride=2)
        self.linear_proj = GLU(hidden, ffn)
        self.boi = nn.Parameter(torch.ones(1, 1, hidden))
        self.eoi = nn.Parameter(torch.ones(1, 1, hidden))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        b, n, e = rows.shape
        grid = round(n**0.5)
        x = rows.view(b, grid, grid, e).permute(0, 3, 1, 2)  # row-major patch grid
        x = self.conv(x).flatten(2).transpose(1, 2)
        x = self.linear_proj(x)
        return torch.cat([self.boi.expand(b, -1, -1), x, self.eoi.expand(b, -1, -1)], dim=1)


class Reference:
    """GLM-Edge-V in torch, fp32, eager attention."""

    def __init__(self, config: SourceConfig) -> None:
        from transformers import GlmConfig, GlmForCausalLM, SiglipVisionConfig, SiglipVisionModel

        self.config = config
        eager: dict[str, Any] = {"attn_implementation": "eager"}
        self.lm = GlmForCausalLM(GlmConfig(**config.glm_kwargs(), **eager)).eval()  # type: ignore[no-untyped-call]
        vision = SiglipVisionConfig(**config.siglip_kwargs(), **eager)
        self.vit = SiglipVisionModel(vision).eval()  # type: ignore[no-untyped-call]
        self.adapter = Adapter(
            config.vision.hidden_size, config.lm.hidden_size, config.lm.intermediate_size
        ).eval()

    def load(self, weights: SnapshotWeights) -> None:
        """Load every tensor of the checkpoint into its module; fail on anything left over."""
        parts: dict[str, tuple[nn.Module, dict[str, torch.Tensor]]] = {
            VIT_PREFIX: (self.vit, {}),
            ADAPTER_PREFIX: (self.adapter, {}),
            "": (self.lm, {}),
        }
        for name in weights.names():
            if IGNORED.search(name):
                continue
            prefix = next(p for p in parts if name.startswith(p))
            parts[prefix][1][name[len(prefix) :]] = torch.from_numpy(weights.get(name))
        for prefix, (module, state) in parts.items():
            result = module.load_state_dict(state, strict=False)
            missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
            if missing or result.unexpected_keys:
                raise WeightError(
                    f"reference load ({prefix or 'language model'}): missing {missing[:5]}, "
                    f"unexpected {[prefix + k for k in result.unexpected_keys[:5]]}"
                )

    @torch.no_grad()
    def image_features(self, pixel_values: np.ndarray) -> np.ndarray:
        """[1, 3, S, S] pixels -> [1, num_image_tokens, hidden] rows (boi and eoi included)."""
        rows = self.vit(pixel_values=torch.from_numpy(pixel_values)).last_hidden_state
        out: np.ndarray = self.adapter(rows).numpy()
        return out

    @torch.no_grad()
    def logits(self, inputs_embeds: np.ndarray) -> np.ndarray:
        """Full-sequence logits [1, L, V] from embeddings, positions 0..L-1, causal mask."""
        embeds = torch.from_numpy(inputs_embeds)
        out: Any = self.lm(inputs_embeds=embeds, use_cache=False)
        logits: np.ndarray = out.logits.numpy()
        return logits

    def embed(self, ids: list[int]) -> np.ndarray:
        """Token embeddings [1, L, hidden] (fp32)."""
        table = self.lm.model.embed_tokens.weight.detach()
        rows: np.ndarray = table[torch.tensor(ids)].unsqueeze(0).numpy()
        return rows

    def greedy(
        self,
        ids: list[int],
        image_rows: np.ndarray,
        span: tuple[int, int],
        max_new_tokens: int,
        stop_ids: set[int],
    ) -> list[int]:
        """Greedy tokens by recomputing the whole sequence each step (no cache: an independent check)."""
        embeds = self.embed(ids)
        embeds[0, span[0] : span[0] + span[1]] = image_rows[0]
        out: list[int] = []
        for _ in range(max_new_tokens):
            token = int(np.argmax(self.logits(embeds)[0, -1]))
            out.append(token)
            if token in stop_ids:
                break
            embeds = np.concatenate([embeds, self.embed([token])], axis=1)
        return out
