"""Vision-language model backends behind the `Captioner` protocol (see `registry.load_captioner`).

- `protocol`: the contract (`Captioner`, `CaptionResult`, `ModelUnavailable`).
- `registry`: the explicit `BACKENDS` dict and the loader the daemon calls.
- `glm_edge_v`: the `onnx` backend (GLM-Edge-V bundle run by onnxruntime), built from `manifest`
  (bundle files and checks), `preprocess`, `prompt`, `decoder` (KV cache in OrtValues), `generate`
  and `sessions`.
- `remote`: the `remote` backend (an OpenAI-compatible chat-completions server).
"""
