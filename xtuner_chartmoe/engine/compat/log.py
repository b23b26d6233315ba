"""The one-line notice a fix logs when it acts (logger
``xtuner_chartmoe.engine.compat``, INFO): quiet unless
``XTUNER_CHARTMOE_COMPAT_LOG=1``, then on stderr."""
import logging
import os
import sys

LOGGER = logging.getLogger('xtuner_chartmoe.engine.compat')
LOG_ENV = 'XTUNER_CHARTMOE_COMPAT_LOG'


def log(message):
    if os.environ.get(LOG_ENV) == '1' and not LOGGER.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter('%(message)s'))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
        LOGGER.propagate = False
    LOGGER.info('xtuner-chartmoe compat: %s', message)
