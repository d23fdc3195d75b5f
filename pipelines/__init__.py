"""The train-to-triton library, one sub-package per concept; each `__init__.py` says what it owns (the README's
Layout lists them). Entry points (`train/`, `export/`, `serve/`, `evaluate/`) parse the config and call it."""
