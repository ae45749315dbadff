"""The Netflix-style event simulator: ``python -m local_stack.simulate``."""
