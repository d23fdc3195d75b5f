"""The merge gate's rules (`rules`): this run's headline figures against a baseline's, judged by thresholds."""
