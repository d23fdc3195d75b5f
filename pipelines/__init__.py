"""The train-to-triton library, one sub-package per concept; each `__init__.py` says what it owns (the README's
Layout lists them). Entry points (`train/`, `export/`, `serve/`, `evaluate/`) parse the config and call it.

The packages stand on floors (`FLOORS`, bottom first): a module imports only packages on a lower floor and, without
cycles, its own package's modules, so that any package can be read, tested and debugged with only what is below it.
Every import stands at the top of its module; only heavy optional frameworks (TensorFlow, torch, TensorRT, ...) are
imported inside a function, each marked `# lazy: <why>`. `tests/test_import_graph.py` keeps it so.
"""

FLOORS: tuple[tuple[str, ...], ...] = (
    ("core",),  # errors, the CLI wrapper, atomic writes: nothing here knows about models
    ("config", "frameworks"),  # the typed model spec and selection; quiet, CPU-safe framework imports
    ("data",),  # what models are fed and what their answers are called
    ("outputs",),  # how a model's outputs are paired and judged
    ("runners",),  # models in process
    ("artifacts",),  # served files
    ("trt",),  # TensorRT engines
    ("model_repository",),  # the Triton model repository
    ("byom", "serving"),  # a user's model; a running Triton
    ("comparison", "performance", "cluster"),  # parity, the benchmark, deployment
    ("merge_gate", "documentation"),  # what is judged and shown from the reports
)
