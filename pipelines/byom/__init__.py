"""Bring your own model: what a user's file is and declares (`sources`), and the spec files written for it
(`spec_files`, behind `python -m export.add` / `export.remove`).
"""
