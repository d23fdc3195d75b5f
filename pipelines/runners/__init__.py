"""Models run in process: the training frameworks (`reference`: the parity reference, never the served file;
`keras_models`, `torch_models`) and the runtimes Triton's backends use (`runtimes`: the served file in
ONNX Runtime or TensorFlow). Frameworks are imported through `pipelines.frameworks`.
"""
