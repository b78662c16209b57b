"""Offline GLM-Edge-V export and quantization (the `export` extra: torch, transformers, onnx).

Nothing here runs on the board. The exporter reads a snapshot directory laid out as the model hub
lays it out (or makes a random-weight one of a named shape), writes the ONNX graphs itself from the
weight tensors, and checks them against a reference rebuilt from native transformers classes.
"""
