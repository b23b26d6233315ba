"""The one-line notice a fix logs when it acts (logger
``xtuner_chartmoe.engine.compat``, INFO): quiet unless
``XTUNER_CHARTMOE_COMPAT_LOG=1``, then on stderr. ``logging`` is imported
only when a fix acts: the start-up file runs in every interpreter."""
import os
import sys

LOGGER_NAME = 'xtuner_chartmoe.engine.compat'
LOG_ENV = 'XTUNER_CHARTMOE_COMPAT_LOG'


def log(message):
    import logging
    logger = logging.getLogger(LOGGER_NAME)
    if os.environ.get(LOG_ENV) == '1' and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter('%(message)s'))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logger.info('xtuner-chartmoe compat: %s', message)
