"""Mistakes of the user's that library code raises (never exits on):
commands and XTuner's own tools report them in one ``error: ...`` line with
exit status 1 and no traceback."""
import sys


class UserError(Exception):
    """A choice of the user's that cannot run (the message says what to do
    instead)."""


def report_in_one_line(previous_hook):
    """A ``sys.excepthook`` that prints a :class:`UserError` as one line and
    leaves every other exception to ``previous_hook``."""

    def hook(kind, value, traceback):
        if issubclass(kind, UserError):
            print(f'error: {value}', file=sys.stderr)
            return
        previous_hook(kind, value, traceback)

    hook.reports_user_errors = True
    return hook


def install_hook():
    """Report uncaught :class:`UserError` in one line (idempotent); an
    interpreter that dies of one exits with status 1, as with any uncaught
    exception."""
    if not getattr(sys.excepthook, 'reports_user_errors', False):
        sys.excepthook = report_in_one_line(sys.excepthook)
