"""What docs/ shows that a run measured: the tables marked in the documents, rendered from the committed reports
(`figures`: one renderer per table, read through each report's typed reader), never typed by hand.
"""
