"""The errors of the IXC2 family: each names the file and what was expected.

``CheckpointError`` (a ``ValueError``): a folder, config or weights that are
not what an InternLM-XComposer2 checkpoint must be. ``CheckpointFileNotFound``
(a ``FileNotFoundError``): a folder, hub snapshot or shard that is missing.
``ImageLoadError`` (a ``ValueError``): an image that cannot be read.
"""


class CheckpointError(ValueError):
    """A folder, config.json or weight file that does not hold what an
    InternLM-XComposer2 / ChartMoE checkpoint must hold."""


class CheckpointFileNotFound(FileNotFoundError):
    """A checkpoint folder, hub snapshot or weight shard that is missing."""


class ImageLoadError(ValueError):
    """An image file that cannot be opened or decoded."""
