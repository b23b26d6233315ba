"""XTuner's ``pth_to_hf`` for models whose config has no ``llm`` entry.

XTuner 0.2.0's converter (``xtuner.tools.model_converters.pth_to_hf``)
checks ``hasattr(cfg.model.llm, "quantization_config")``, which raises for
a model config without ``llm`` (``IXC2ChartMoEModel`` builds its LLM inside
``ixc2``) before the model is built. Run through ``chartmoe convert`` (as
``runpy`` runs it: from the loader's code), the check reads
``cfg.model.get("llm")`` instead: the same answer wherever ``llm`` exists.
"""
from .log import log

CHECK = 'hasattr(cfg.model.llm, "quantization_config")'
TOLERANT = 'hasattr(cfg.model.get("llm"), "quantization_config")'


def pth_to_hf_without_llm(spec):
    loader = spec.loader
    source = loader.get_source(spec.name)
    if source is None or CHECK not in source:
        return False
    code = compile(source.replace(CHECK, TOLERANT), spec.origin, 'exec')
    loader.get_code = lambda name: code
    log("XTuner's pth_to_hf: its QLoRA check reads cfg.model.get('llm') "
        '(a model config may have no llm)')
    return True
