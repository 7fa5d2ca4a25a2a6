"""The collector benchmark: `python -m bench.collector` (see __main__.py)."""
