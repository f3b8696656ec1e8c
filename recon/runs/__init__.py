"""Run bookkeeping: provenance records, sweeps, hyper-parameter search, evaluation and collection.

These modules read and write run folders; none of them holds an algorithm.
"""
