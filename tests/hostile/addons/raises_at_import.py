"""Raises while the file is imported: the load fails with the error and its line, the proxy keeps relaying."""

raise RuntimeError("boom at import")
