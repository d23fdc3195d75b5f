"""What a run is about, typed and validated once: the declarative model spec (`spec`: tensor names, dtypes,
dims, tolerances, pre-processing, lossy bounds) and which models a command works on (`selection`).
"""
