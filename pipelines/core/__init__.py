"""The plumbing every command shares: typed errors and exit codes (`errors`), the one CLI wrapper (`cli`),
atomic outputs (`atomic`), scratch space no exit path leaves behind (`scratch`), dying with the caller
(`lifeline`), work that overlaps a wait (`background`), known noise dropped from stderr (`stderr_filter`) and
where the project is, with paths shown relative to it (`paths`). Nothing here knows about models.
"""
