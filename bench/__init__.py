"""Latency and throughput benchmarks against the Tradovate simulator (``python -m bench [name]``)."""
