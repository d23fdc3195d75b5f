"""What serving costs: the closed-loop load (`load`), the benchmark's typed report (`benchmark_report`), the
perf_analyzer cross-check (`perf_analyzer`), the Flask baseline's wire format (`flask_wire`) and hostile
requests measured against good ones (`hostile`).
"""
