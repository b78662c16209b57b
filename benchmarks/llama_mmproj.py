"""The snapshot's vision tower and adapter as a llama.cpp `mmproj` GGUF (projector type `adapter`).

llama.cpp's multimodal library (mtmd / clip) runs GLM-Edge-V's SigLIP tower through its llava graph
and the adapter as `PROJECTOR_TYPE_GLM_EDGE`, whose GGUF name is "adapter". It reads these keys:
`clip.has_vision_encoder`, `clip.projector_type`, `clip.vision.{embedding_length, feed_forward_length,
block_count, projection_dim, attention.head_count, attention.layer_norm_epsilon, image_size,
patch_size, image_mean, image_std}`, and these tensors (written in F16 for matrices and convolutions,
F32 for vectors, as llama.cpp's own GLM-Edge converter does):

    v.patch_embd.{weight,bias}          embeddings.patch_embedding
    v.position_embd.weight              embeddings.position_embedding
    v.blk.N.attn_{q,k,v,out}.{w,b}      encoder.layers.N.self_attn.{q,k,v,out}_proj
    v.blk.N.ln{1,2}.{w,b}               encoder.layers.N.layer_norm{1,2}
    v.blk.N.ffn_up.{w,b}                encoder.layers.N.mlp.fc1   (hidden -> mlp)
    v.blk.N.ffn_down.{w,b}              encoder.layers.N.mlp.fc2   (mlp -> hidden)
    v.post_ln.{w,b}                     post_layernorm (GLM-Edge-V uses last_hidden_state)
    adapter.conv.{weight,bias}          adapter.conv (Conv2d k=2 s=2)
    adapter.linear.linear.weight        adapter.linear_proj.linear_proj
    adapter.linear.norm1.{w,b}          adapter.linear_proj.norm1
    adapter.linear.dense_h_to_4h.weight adapter.linear_proj.dense_h_to_4h
    adapter.linear.gate.weight          adapter.linear_proj.gate_proj
    adapter.linear.dense_4h_to_h.weight adapter.linear_proj.dense_4h_to_h
    adapter.boi / adapter.eoi           adapter.boi / adapter.eoi (1x1xH, squeezed to H)

fc1 is written as `ffn_up` (its true role); llama.cpp's legacy converter wrote it as `ffn_down` and
the loader swaps such files back, keyed on the shapes, so either naming loads the same graph.
The pooling head (`head.*`) is not used by GLM-Edge-V and is left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_VIT = "model.vision.vit.model.vision_model."
_ADAPTER = "model.vision.adapter."
_LAYER = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.out_proj": "attn_out",
    "layer_norm1": "ln1",
    "layer_norm2": "ln2",
    "mlp.fc1": "ffn_up",
    "mlp.fc2": "ffn_down",
}
_ADAPTER_NAMES = {
    "conv.weight": "adapter.conv.weight",
    "conv.bias": "adapter.conv.bias",
    "linear_proj.linear_proj.weight": "adapter.linear.linear.weight",
    "linear_proj.norm1.weight": "adapter.linear.norm1.weight",
    "linear_proj.norm1.bias": "adapter.linear.norm1.bias",
    "linear_proj.dense_h_to_4h.weight": "adapter.linear.dense_h_to_4h.weight",
    "linear_proj.gate_proj.weight": "adapter.linear.gate.weight",
    "linear_proj.dense_4h_to_h.weight": "adapter.linear.dense_4h_to_h.weight",
    "boi": "adapter.boi",
    "eoi": "adapter.eoi",
}


def tensor_map(num_layers: int) -> dict[str, str]:
    """Snapshot tensor name -> mmproj tensor name, for every tensor the mmproj holds."""
    names = {
        _VIT + "embeddings.patch_embedding.weight": "v.patch_embd.weight",
        _VIT + "embeddings.patch_embedding.bias": "v.patch_embd.bias",
        _VIT + "embeddings.position_embedding.weight": "v.position_embd.weight",
        _VIT + "post_layernorm.weight": "v.post_ln.weight",
        _VIT + "post_layernorm.bias": "v.post_ln.bias",
    }
    for i in range(num_layers):
        for src, dst in _LAYER.items():
            for kind in ("weight", "bias"):
                names[f"{_VIT}encoder.layers.{i}.{src}.{kind}"] = f"v.blk.{i}.{dst}.{kind}"
    names.update({_ADAPTER + src: dst for src, dst in _ADAPTER_NAMES.items()})
    return names


def _is_linear(name: str) -> bool:
    return (
        name.endswith(".weight")
        and (".attn_" in name or ".ffn_" in name or ".linear." in name)
        and ("norm" not in name)
    )


def write_mmproj(snapshot: Path, out: Path, qtype: str = "f16") -> None:
    """Write the vision tower + GLM-Edge adapter of `snapshot` to `out` (F16 matrices, F32 vectors).

    `qtype` "q8_0" stores the linear layers' weights as Q8_0 where their rows split into 32-value
    blocks (the tower's fc2, 4304 wide, does not and stays F16), like llama.cpp's own Q8_0 mmproj
    files; convolutions and the position table stay F16.
    """
    import gguf

    from edged.export.source_config import read_config
    from edged.export.weights import SnapshotWeights

    sc = read_config(snapshot)
    v = sc.vision
    pre = sc.raw.get("vision_config", {})
    w = SnapshotWeights(snapshot)
    writer = gguf.GGUFWriter(str(out), "clip")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_text_encoder", False)
    writer.add_string("clip.projector_type", "adapter")
    ftype = gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16
    writer.add_file_type(ftype)
    writer.add_name("glm-edge-v vision tower (edged benchmark)")
    writer.add_uint32("clip.vision.image_size", v.image_size)
    writer.add_uint32("clip.vision.patch_size", v.patch_size)
    writer.add_uint32("clip.vision.embedding_length", v.hidden_size)
    writer.add_uint32("clip.vision.feed_forward_length", v.intermediate_size)
    writer.add_uint32("clip.vision.projection_dim", 0)
    writer.add_uint32("clip.vision.attention.head_count", v.num_heads)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", float(pre.get("layer_norm_eps", 1e-6)))
    writer.add_uint32("clip.vision.block_count", v.num_layers)
    proc = json.loads((snapshot / "preprocessor_config.json").read_text(encoding="utf-8"))
    writer.add_array("clip.vision.image_mean", [float(x) for x in proc["image_mean"]])
    writer.add_array("clip.vision.image_std", [float(x) for x in proc["image_std"]])
    writer.add_bool("clip.use_gelu", True)
    for src, dst in tensor_map(v.num_layers).items():
        array = np.asarray(w.get(src)).squeeze()
        if qtype == "q8_0" and _is_linear(dst) and array.shape[-1] % 32 == 0:
            q8 = gguf.GGMLQuantizationType.Q8_0
            packed = gguf.quants.quantize(array.astype(np.float32), q8)
            writer.add_tensor(dst, packed, raw_dtype=q8)
            continue
        dtype = np.float16 if array.ndim >= 2 else np.float32
        writer.add_tensor(dst, np.ascontiguousarray(array.astype(dtype)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()


if __name__ == "__main__":
    import sys

    write_mmproj(Path(sys.argv[1]), Path(sys.argv[2]), *(sys.argv[3:4] or ["f16"]))
