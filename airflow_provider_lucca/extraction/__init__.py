"""Extraction of realized trainings into date partitions: windows, spooling, formats, commits.

Uses the client and ``ObjectStoragePath``-like paths only; the operator adds the Airflow context.
"""
