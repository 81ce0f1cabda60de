"""Quantization: ONNX (onnxruntime.quantization) and TFLite (the TFLite converter), with drift checks."""
