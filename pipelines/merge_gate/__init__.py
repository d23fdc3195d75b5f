"""The merge gate: its rules (`rules`: this run's headline figures against a baseline's, judged by thresholds),
its run (`baseline_check`: typed settings, the baseline read from git through DVC or from another run's tree), and
the check before it (`lock_freshness`: does the committed dvc.lock record this commit's code and params?).
"""
