"""Reconstructors (classical and learned), training, evaluation and command-line entry points.

Every reconstructor maps measurements back to images through an operator: ``x = recon(y, op)``.
Classical solvers live in :mod:`recon.classical` as plain functions with a visible loop.
"""
