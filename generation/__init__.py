"""The generation engine: requests, the model catalogue, pipelines, scheduling and workers.

This package never imports `discord`; only worker processes import `torch` and `diffusers`.
"""
