"""The decoder session and its KV cache, kept in onnxruntime memory between steps.

Each layer's key and value cache is one preallocated `OrtValue` of [1, kv_heads, capacity, head_dim],
bound through IOBinding as both the past input and the present output, so GroupQueryAttention writes
the new positions in place: nothing of the cache crosses into numpy during generation. Only the
step's embeddings, mask and positions go in, and one row of logits comes out.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edged.inference.manifest import LmArch


class KvCache:
    """Per-layer key/value buffers plus the number of positions filled."""

    def __init__(self, lm: LmArch, capacity: int) -> None:
        import onnxruntime as ort

        shape = [1, lm.num_kv_heads, capacity, lm.head_dim]
        self.capacity = capacity
        self.length = 0
        self.layers = [
            (
                ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, "cpu"),
                ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, "cpu"),
            )
            for _ in range(lm.num_layers)
        ]

    @property
    def nbytes(self) -> int:
        k = self.layers[0][0].shape()
        return 2 * len(self.layers) * int(np.prod(k)) * 4


class Decoder:
    """Runs `decoder_model_merged.onnx` one chunk at a time against a `KvCache`."""

    def __init__(self, session: Any, lm: LmArch) -> None:
        import onnxruntime as ort

        self.session = session
        self.lm = lm
        self._cache: KvCache | None = None
        self._binding: Any = None
        self._logits = ort.OrtValue.ortvalue_from_shape_and_type([1, 1, lm.vocab_size], np.float32, "cpu")
        self._ones = np.ones((1, lm.max_position_embeddings), np.int64)
        self._keep: list[np.ndarray] = []
        self.ort_seconds = 0.0  # time spent inside onnxruntime, for the overhead figure

    def start(self, capacity: int) -> KvCache:
        """An empty cache of at least `capacity` positions (the buffers are reused when big enough)."""
        if capacity > self.lm.max_position_embeddings:
            raise ValueError(
                f"sequence of {capacity} positions exceeds the model's {self.lm.max_position_embeddings}"
            )
        if self._cache is None or self._cache.capacity < capacity:
            self._cache = None  # free the old buffers before allocating new ones
            self._cache = KvCache(self.lm, capacity)
            self._binding = self._bind_cache(self._cache)
        self._cache.length = 0
        return self._cache

    def _bind_cache(self, cache: KvCache) -> Any:
        binding = self.session.io_binding()
        for i, (k, v) in enumerate(cache.layers):
            binding.bind_ortvalue_input(f"past_key_values.{i}.key", k)
            binding.bind_ortvalue_input(f"past_key_values.{i}.value", v)
            binding.bind_ortvalue_output(f"present.{i}.key", k)
            binding.bind_ortvalue_output(f"present.{i}.value", v)
        binding.bind_ortvalue_output("logits", self._logits)
        return binding

    def rewind(self, cache: KvCache, length: int) -> None:
        """Forget every position from `length` on, keeping the ones before it (a shared prefix).

        No copy is needed: the graph reads the past length from the attention mask, so the next step
        writes at `length` over whatever a previous branch left there, and never looks beyond.
        """
        if cache is not self._cache:
            raise ValueError("cache does not belong to this decoder (call start())")
        if not 0 <= length <= cache.length:
            raise ValueError(f"cannot rewind a cache of {cache.length} positions to {length}")
        cache.length = length

    def step(self, cache: KvCache, embeds: np.ndarray) -> np.ndarray:
        """Append `embeds` [1, S, hidden] at the end of the cache; returns the last position's logits [V]."""
        if cache is not self._cache:
            raise ValueError("cache does not belong to this decoder (call start())")
        seq = embeds.shape[1]
        total = cache.length + seq
        if total > cache.capacity:
            raise ValueError(f"KV cache full: {total} positions > capacity {cache.capacity}")
        embeds = np.ascontiguousarray(embeds, dtype=np.float32)
        positions = np.arange(cache.length, total, dtype=np.int64)[None]
        self._keep = [embeds, positions]  # the binding points at these arrays until the run ends
        b = self._binding
        b.bind_cpu_input("inputs_embeds", embeds)
        b.bind_cpu_input("attention_mask", self._ones[:, :total])
        b.bind_cpu_input("position_ids", positions)
        t0 = time.perf_counter()
        self.session.run_with_iobinding(b)
        self.ort_seconds += time.perf_counter() - t0
        cache.length = total
        return np.array(self._logits.numpy()[0, -1])  # a copy: the next step reuses the buffer

    def full_logits(self, embeds: np.ndarray) -> np.ndarray:
        """Last-position logits of a whole sequence with no cache at all (plain past/present tensors).

        An independent path through the same graph: tests compare it with incremental decoding.
        """
        lm = self.lm
        seq = embeds.shape[1]
        feeds: dict[str, np.ndarray] = {
            "inputs_embeds": np.ascontiguousarray(embeds, dtype=np.float32),
            "attention_mask": np.ones((1, seq), np.int64),
            "position_ids": np.arange(seq, dtype=np.int64)[None],
        }
        empty = np.zeros((1, lm.num_kv_heads, 0, lm.head_dim), np.float32)
        for i in range(lm.num_layers):
            feeds[f"past_key_values.{i}.key"] = empty
            feeds[f"past_key_values.{i}.value"] = empty
        return np.asarray(self.session.run(["logits"], feeds)[0][0, -1])
