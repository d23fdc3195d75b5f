"""Served files: writing them and the one export self-check (`writing`), reading a file's own I/O signature
and checking it against the spec (`io_signature`), FP16/INT8 copies made with ONNX Runtime and
onnxconverter-common (`quantization`), and the record an export that failed leaves in place of its files
(`export_failure`), so that one model's failure is that model's; the same model written twice is the same bytes
(`reproducible`: what TensorFlow, Keras, tf2onnx and torch.save would otherwise write differently each time).
"""
