"""XTuner's LLaVA family: releases and training checkpoints of
:class:`~xtuner_chartmoe.model.ChartMoEModel` (:mod:`.chat`)."""
