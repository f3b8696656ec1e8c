"""Benchmarks and GPU checks: measurements that print a table and write JSON to
``bench_results/<study>/``. Run from the checkout as ``python -m benchmarks.<name>``; not part of
the wheel, and nothing in the library imports them.

Rooms:

- :mod:`~benchmarks.common`: JSON output, timing, errors, reading a ``recon-train`` run.
- :mod:`~benchmarks.operators`: CT operator throughput, every backend and peers (``make bench``).
- :mod:`~benchmarks.pat_operators`: photoacoustic models against the time stepper (and j-Wave).
- :mod:`~benchmarks.gpu_check`: GPU validation of the CT operators and classical reconstructors.
- :mod:`~benchmarks.tv`: our batched ``tv_pdhg`` against ODL's PDHG on the same TV problem.
- :mod:`~benchmarks.train_throughput`: learned primal-dual training steps per second by backend.
- :mod:`~benchmarks.mirror`: learned mirror descent against gradient descent, Nesterov and TV.
- :mod:`~benchmarks.generative`: generative regularisers, in and out of distribution.
- :mod:`~benchmarks.correction`: a learned operator correction's errors and TV reconstructions.
- :mod:`~benchmarks.correction_speed`: TV speed with ``A``, ``Ã`` and several runs' ``A_q``.
"""
