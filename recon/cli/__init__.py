"""Command-line entry points: ``recon-train``, ``recon-eval``, ``recon-collect``, and the
``recon-quickstart`` and ``recon-demo`` walk-throughs.

Each module holds one ``main`` and a plain function that does the work from a composed
config, so the same run can be started from Python without Hydra's command line.
"""
