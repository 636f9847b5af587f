"""Evaluations: benchmarks (hanoi, ...) and attribution, built on the executor and pipelines."""
