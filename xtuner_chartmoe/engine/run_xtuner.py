"""``python -m xtuner_chartmoe.engine.run_xtuner MODULE ARGS...``: run one of
XTuner's tools (``xtuner.tools.train``, its converters) as ``__main__``
with the fixes of :mod:`xtuner_chartmoe.engine.compat` installed first, whether or
not the environment has the start-up file. Used by ``chartmoe train`` /
``chartmoe convert``."""
import runpy
import sys

from xtuner_chartmoe.engine.compat import install

if __name__ == '__main__':
    install()
    module, sys.argv = sys.argv[1], [sys.argv[1]] + sys.argv[2:]
    runpy.run_module(module, run_name='__main__', alter_sys=True)
