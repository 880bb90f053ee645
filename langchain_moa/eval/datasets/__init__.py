"""Benchmark data shipped with the package, each folder with its licence and NOTICE.md.

Files are unchanged copies of their upstream files (their SHA-256 are in the benchmarks'
records, `langchain_moa.eval.registry`). They are read through `langchain_moa.eval.data`,
never imported.
"""
