"""InternLM2's remote code (XTuner's LLaVA-InternLM2 and the stand-ins)
under transformers >= 4.42: ``generate(inputs_embeds=...)`` must feed the
embeddings on the first step."""
import functools

from ...engine.compat.log import log


def _is_empty_cache(past_key_values):
    if past_key_values is None:
        return True
    get_seq_length = getattr(past_key_values, 'get_seq_length', None)
    return get_seq_length is not None and get_seq_length() == 0


def fix_internlm2_generation(model_class):
    """Let ``generate(inputs_embeds=...)`` work with InternLM2's remote code
    under transformers >= 4.42, whose ``generate`` passes an empty cache
    where the remote code expects ``None``: the code then keeps the empty
    ``input_ids`` and drops the embeddings ("size of tensor a (0) must match
    the size of tensor b"). On the first step (empty cache) the embeddings
    are fed. Acts on classes named ``InternLM2ForCausalLM`` that define
    their own ``prepare_inputs_for_generation``; idempotent. Returns whether
    the class was changed."""
    import transformers
    version = tuple(int(p) for p in transformers.__version__.split('.')[:2])
    original = model_class.__dict__.get('prepare_inputs_for_generation')
    if (model_class.__name__ != 'InternLM2ForCausalLM' or original is None
            or getattr(original, '_chartmoe_fixed', False)
            or version < (4, 42)):
        return False

    @functools.wraps(original)
    def prepare_inputs_for_generation(self, input_ids, past_key_values=None,
                                      attention_mask=None, inputs_embeds=None,
                                      **kwargs):
        inputs = original(self, input_ids, past_key_values=past_key_values,
                          attention_mask=attention_mask,
                          inputs_embeds=inputs_embeds, **kwargs)
        if inputs_embeds is not None and _is_empty_cache(past_key_values):
            inputs.pop('input_ids', None)
            inputs['inputs_embeds'] = inputs_embeds
        return inputs

    prepare_inputs_for_generation._chartmoe_fixed = True
    model_class.prepare_inputs_for_generation = prepare_inputs_for_generation
    log(f'{model_class.__module__}.InternLM2ForCausalLM: generate() from '
        'inputs_embeds with an empty cache feeds the embeddings')
    return True


def internlm2_generation(module):
    """Apply :func:`fix_internlm2_generation` to every class transformers
    loads from remote code (``trust_remote_code=True``)."""
    original = module.get_class_in_module

    @functools.wraps(original)
    def get_class_in_module(*args, **kwargs):
        cls = original(*args, **kwargs)
        fix_internlm2_generation(cls)
        return cls

    module.get_class_in_module = get_class_in_module
    return False  # acting is logged per class, when one is fixed
