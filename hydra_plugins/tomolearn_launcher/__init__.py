"""tomolearn's submitit launchers: Hydra's, plus resume-on-requeue (``conf/hydra/launcher/``).

Hydra only instantiates launchers found in the ``hydra_plugins`` namespace package, hence this
folder beside ``recon/``. See :mod:`hydra_plugins.tomolearn_launcher.launcher`.
"""
