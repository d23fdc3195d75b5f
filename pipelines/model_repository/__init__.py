"""The Triton model repository: `config.pbtxt` generated from the spec through Triton's model-config protobuf
(`triton_config`), one directory per served model written atomically (`assembly`), the image ensemble's
steps (from `pipelines.config.ensemble_parts`), what the stand-in backends honour (`standins`), and the proof key
that says whether a proof still holds for what it was made from (`fingerprint`).
"""
