"""Developer tools run from the repository root: requirement traceability (trace.py and
its pytest plugin req_plugin.py)."""
