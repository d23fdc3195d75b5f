"""The Triton model repository: `config.pbtxt` generated from the spec through Triton's model-config protobuf
(`triton_config`), one directory per served model written atomically (`assembly`), the image ensemble's
steps (from `pipelines.config.ensemble_parts`) and what the stand-in backends honour (`standins`).
"""
