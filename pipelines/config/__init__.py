"""What a run is about, typed and validated once: the declarative model spec (`spec`: tensor names, dims,
tolerances, pre-processing, lossy bounds), tensor data types and every other library's name for them
(`dtypes`), which models a command works on (`selection`), and an ensemble's steps derived from its spec
(`ensemble_parts`).
"""
