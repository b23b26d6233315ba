"""The ``chartmoe`` command (:mod:`.cli`) and the main of each of its
commands, one module each (``tools/*.py`` in a checkout are shims)."""
