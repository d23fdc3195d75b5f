"""Served files: writing them and the one export self-check (`writing`), reading a file's own I/O signature
and checking it against the spec (`io_signature`), FP16/INT8 copies made with ONNX Runtime and
onnxconverter-common (`quantization`).
"""
