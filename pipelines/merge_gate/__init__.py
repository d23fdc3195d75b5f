"""The merge gate: its rules (`rules`: this run's headline figures against a baseline's, judged by thresholds) and
its run (`baseline_check`: typed settings, the baseline read from git through DVC or from another run's tree).
"""
