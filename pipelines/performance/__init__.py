"""What serving costs: the benchmark job (`job`: its settings typed once, the run, the reports), its measuring
(`measurement`: load settings, the sweeps, Triton's own statistics), the paths it measures (`measured_paths`), the
Flask baseline's process (`flask_process`) and wire format (`flask_wire`), the closed-loop load (`load`), the typed
report (`benchmark_report`), the perf_analyzer cross-check (`perf_analyzer`), hostile requests as bytes on the wire
(`hostile_requests`) and measured against good ones (`hostile`), what the front costs a good request (`front_cost`)
and the hardening check that sends them through the front (`hardening_check`).
"""
