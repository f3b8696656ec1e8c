"""Reconstructors (classical and learned), their training, runs and command line.

Every reconstructor maps measurements back to images through an operator: ``x = recon(y, op)``.

Rooms, lowest first (a module imports only from rooms above it in this list):

- :mod:`~recon.base`: the reconstructor contract (``forward(y, op)``, ``check_measurements``).
- :mod:`~recon.checks`: argument validators. :mod:`~recon.checkpoints`: atomic writes, RNG
  state, safe loading (``load_trained``, ``load_run``). :mod:`~recon.data`: data splits from a
  ``data`` config. :mod:`~recon.cpu`: CPU memory tuning.
- :mod:`~recon.solvers`: the iterative maths, once (CGLS, Landweber, SIRT, TV, FISTA, PDHG,
  the plug-and-play steps).
- Families, built on the solvers: :mod:`~recon.classical`, :mod:`~recon.unrolled`,
  :mod:`~recon.pnp`, :mod:`~recon.mirror`, :mod:`~recon.generative`, :mod:`~recon.correction`.
- :mod:`~recon.training`: one Trainer and its tasks.
- :mod:`~recon.runs`: provenance, sweeps, search, collect, evaluation.
- :mod:`~recon.cli`: the console scripts ``recon-train``, ``recon-eval``, ``recon-collect``,
  ``recon-quickstart``, ``recon-demo``.
"""
