"""Parity, split as Polygraphy splits it: the job as the config asks it (`job`: ParityJob, the run against one
server, localize's run), run and compare (`comparator`), per-output metrics judged against the spec's
tolerances (`output_metrics`), lossy precisions judged by what the model is for (`lossy`), the first layer to
blame (`localize`) and the typed report (`parity_report`), whose error figures are recorded as bounds that do not
flip between CPUs (`recorded_figures`).
"""
