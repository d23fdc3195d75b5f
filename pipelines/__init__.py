"""Shared library of the train-to-triton pipeline: specs, paths, Triton configs, server lifecycle, comparison."""
