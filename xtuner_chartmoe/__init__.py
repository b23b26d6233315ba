"""xtuner-chartmoe: ChartMoE (MoE connector) training and evaluation on XTuner.

Kept import-light on purpose: a start-up hook imports this package in every
interpreter (see ``engine.compat``). Import the parts you need:
``xtuner_chartmoe.model``, ``xtuner_chartmoe.dataset``, ...
"""
__version__ = '0.2.0'  # the one version number (setup.py reads it)
