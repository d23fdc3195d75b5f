"""What a run is about, typed and validated once: the declarative model spec (`spec`: a served model, its
formats, precision, batching, parity, TensorRT and quantization settings), the network it serves (`network`),
tensors (`tensors`), tolerances and lossy bounds (`tolerances`), image pre-processing and decoding limits
(`preprocessing`), the YAML form of these types and the keys each reads (`spec_yaml`), tensor data types and
every other library's name for them (`dtypes`), which models a command works on (`selection`), and an ensemble's
steps derived from its spec (`ensemble_parts`).
"""
