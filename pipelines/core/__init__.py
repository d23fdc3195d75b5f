"""The plumbing every command shares: typed errors and exit codes (`errors`), the one CLI wrapper (`cli`),
atomic outputs (`atomic`), scratch space no exit path leaves behind (`scratch`), dying with the caller
(`lifeline`) and work that overlaps a wait (`background`). Nothing here knows about models.
"""
