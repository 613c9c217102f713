"""Benchmarks of the engine and the experiments (issue 6); run as `python bench/<name>.py`."""
