"""A model's outputs and the one output validator every check uses (the export self-check, parity, lossy judging,
localize): how answers are held, batch first or request by request where their shapes differ, and paired with a
reference's (`answers`); the comparison itself, typed per output, exact for integer, bool and string outputs and by
their differences for floating-point ones (`validator`); those differences as figures, and judging them against a
tolerance (`metrics`). Comparing and judging stay apart, as in Polygraphy.
"""
