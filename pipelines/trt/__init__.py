"""TensorRT engines, in one place: how to build them (`build`), the build as a job (`job`), the plan files and
their metadata (`plans`), which TensorRT and GPU will load a plan (`loadability`), what this host offers (`host`),
and the thin layer that calls TensorRT itself (`engine`, the only module that imports `tensorrt`).
"""
