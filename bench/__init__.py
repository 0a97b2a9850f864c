"""Benchmark of the Lucca extraction against the sandbox (``make bench``); see ``bench/run.py``."""
