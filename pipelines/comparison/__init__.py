"""Parity, split as Polygraphy splits it: run and compare (`comparator`), per-output metrics and tolerances
(`output_metrics`), lossy precisions judged by what the model is for (`lossy`), the first layer to blame
(`localize`) and the typed report (`parity_report`).
"""
