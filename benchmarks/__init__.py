"""Benchmarks: one module each, run from the repository root as `python -m benchmarks.NAME`.

Each prints ONE JSON line on stdout. Running them as modules (not `python benchmarks/NAME.py`)
keeps the repository root first on the import path, so `benchmarks/storage.py` cannot shadow the
`storage` package.
"""
