"""Parity, split as Polygraphy splits it: the job as the config asks it (`job`: ParityJob, the run against one
server, localize's run); what is compared, shared by both halves (`parity_cases`); the running half, the only one
that runs models and sends requests (`parity_run`); the judging half, which compares with the one output validator
(`pipelines.outputs`) and judges against the spec's tolerances (`parity_judge`); lossy precisions judged by what the
model is for (`lossy`), the first layer to blame (`localize`) and the typed report (`parity_report`), whose error
figures are recorded as bounds that do not flip between CPUs (`recorded_figures`).
"""
