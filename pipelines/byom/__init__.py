"""Bring your own model: what a user's file is and declares (`sources`), what it implies, checked before
anything is written (`derivation`), the network and model files written for it and their index
conf/added.yaml (`added_index`, behind `python -m export.add` / `export.remove`), and its conversion into the
formats Triton serves (`conversion`, behind the `export_added` stage).
"""
