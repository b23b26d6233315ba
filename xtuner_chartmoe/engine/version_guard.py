"""Releases of our dependencies known to break this plugin.

``setup.py``'s extras bound them; an environment that has them anyway gets
one clear error where the dependency is first needed (``chartmoe train
--deepspeed``, the lmms-eval model), naming the package, its version and
the fix, instead of a traceback halfway through a run.
"""
from dataclasses import dataclass
from importlib import metadata

from packaging.version import Version


class IncompatibleVersionError(ValueError):
    """An installed release that is known to break a feature (a
    ``ValueError``: the commands report it in one line)."""


@dataclass(frozen=True)
class Breakage:
    """``package`` from release ``first_bad`` on breaks ``feature``."""
    feature: str
    package: str
    first_bad: str
    why: str


BREAKAGES = (
    Breakage('lmms-eval', 'filelock', '4.3',
             'it removed filelock._api, which lmms-eval 0.7 imports when an '
             'evaluation starts'),
    Breakage('deepspeed', 'deepspeed', '0.19',
             'it removed a module that mmengine 0.10 imports for its '
             'DeepSpeed strategy'),
)


def check(feature):
    """Raise :class:`IncompatibleVersionError` when an installed package is
    at or past a release known to break ``feature``."""
    for breakage in BREAKAGES:
        if breakage.feature != feature:
            continue
        try:
            version = metadata.version(breakage.package)
        except metadata.PackageNotFoundError:
            continue
        if Version(version) >= Version(breakage.first_bad):
            raise IncompatibleVersionError(
                f'{breakage.package} {version} breaks {feature}: '
                f'{breakage.why}; install a release before '
                f'{breakage.first_bad}: pip install '
                f"'{breakage.package}<{breakage.first_bad}'")
