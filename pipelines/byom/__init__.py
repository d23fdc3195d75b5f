"""Bring your own model: what a user's file is and declares (`sources`), the spec files written for it
(`spec_files`, behind `python -m export.add` / `export.remove`), and its conversion into the formats Triton
serves (`conversion`, behind the `export_added` stage).
"""
