"""Strawberry types, inputs and result unions; `root.py` builds the Schema."""
