"""llama.cpp on the same language-model shape, as the benchmark's baseline (optional).

The snapshot's language model is written as a GGUF of llama.cpp's `chatglm` architecture (fused QKV,
fused gate/up, adjacent-pair rotary over all 128 dims: the layout llama.cpp's converter gives
GLM-Edge), in F16, then quantized to Q4_0 with llama.cpp's own quantizer. Needs llama-cpp-python
and gguf (`pip install llama-cpp-python==0.3.36 gguf`, compiled from source).
"""

from __future__ import annotations

import ctypes
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def snapshot_of(bundle: Path) -> Path:
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    return Path(manifest["source"]["path"])


def write_gguf_f16(snapshot: Path, out: Path) -> None:
    """The language model of `snapshot` as an F16 chatglm GGUF (token ids only: a placeholder vocab)."""
    import gguf

    from edged.export.source_config import read_config
    from edged.export.weights import SnapshotWeights

    sc = read_config(snapshot)
    lm = sc.lm
    w = SnapshotWeights(snapshot)
    writer = gguf.GGUFWriter(str(out), "chatglm")
    writer.add_context_length(lm.max_position_embeddings)
    writer.add_embedding_length(lm.hidden_size)
    writer.add_feed_forward_length(lm.intermediate_size)
    writer.add_block_count(lm.num_layers)
    writer.add_head_count(lm.num_heads)
    writer.add_head_count_kv(lm.num_kv_heads)
    writer.add_layer_norm_rms_eps(lm.rms_norm_eps)
    writer.add_rope_dimension_count(lm.rotary_dim)
    writer.add_rope_freq_base(lm.rope_theta)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([f"t{i}" for i in range(lm.vocab_size)])
    writer.add_token_types([1] * lm.vocab_size)
    writer.add_token_merges(["t 0"])  # llama.cpp insists on merges; the benchmark feeds token ids
    writer.add_eos_token_id(sc.eos_ids[0] if sc.eos_ids else 0)

    def put(name: str, array: np.ndarray) -> None:
        writer.add_tensor(name, array.astype(np.float16 if array.ndim > 1 else np.float32))

    put("token_embd.weight", w.get("model.embed_tokens.weight"))
    put("output_norm.weight", w.get("model.norm.weight"))
    put("output.weight", w.get("model.embed_tokens.weight" if lm.tie_word_embeddings else "lm_head.weight"))
    for i in range(lm.num_layers):
        p = f"model.layers.{i}."
        put(f"blk.{i}.attn_norm.weight", w.get(p + "input_layernorm.weight"))
        put(
            f"blk.{i}.attn_qkv.weight",
            np.concatenate([w.get(p + f"self_attn.{x}_proj.weight") for x in "qkv"], axis=0),
        )
        put(f"blk.{i}.attn_output.weight", w.get(p + "self_attn.o_proj.weight"))
        put(f"blk.{i}.ffn_norm.weight", w.get(p + "post_attention_layernorm.weight"))
        put(f"blk.{i}.ffn_up.weight", w.get(p + "mlp.gate_up_proj.weight"))
        put(f"blk.{i}.ffn_down.weight", w.get(p + "mlp.down_proj.weight"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()


def make_q4_0(bundle: Path, gguf_path: Path, threads: int) -> Path:
    """The Q4_0 GGUF of the bundle's source snapshot (built once, then reused)."""
    import llama_cpp

    if gguf_path.is_file():
        return gguf_path
    f16 = gguf_path.with_suffix(".f16.gguf")
    if not f16.is_file():
        write_gguf_f16(snapshot_of(bundle), f16)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(f16).encode(), str(gguf_path).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama.cpp could not quantize {f16} (code {rc})")
    f16.unlink()
    return gguf_path


def run_llama(
    bundle: Path, gguf_path: Path, threads: int, prompt_tokens: int, new_tokens: int
) -> dict[str, Any]:
    """Prefill `prompt_tokens` and decode `new_tokens` with llama.cpp; returns its own timings."""
    import llama_cpp

    model = make_q4_0(bundle, gguf_path, threads)
    llm = llama_cpp.Llama(
        str(model),
        n_ctx=prompt_tokens + new_tokens + 8,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=512,
        verbose=False,
    )
    rng = np.random.default_rng(0)
    prompt = [int(t) for t in rng.integers(0, llm.n_vocab() - 64, prompt_tokens)]
    t0 = time.perf_counter()
    llm.eval(prompt)
    prefill = time.perf_counter() - t0
    t1 = time.perf_counter()
    vocab = llm.n_vocab()
    for _ in range(new_tokens):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,))
        llm.eval([int(np.argmax(logits))])  # greedy, like the onnx runtime
    decode = time.perf_counter() - t1
    size = model.stat().st_size
    llm.close()
    return {
        "prefill_tok_s": prompt_tokens / prefill,
        "decode_tok_s": new_tokens / decode,
        "prompt_tokens": prompt_tokens,
        "model_mb": size / 1e6,
    }
