"""Model families: the base VLMs that ChartMoE's connector plugs into.

Each family implements :class:`.base.ChatModel` (encode images -> visual
tokens, build its prompt, generate): XTuner's LLaVA (:mod:`.llava`) and
InternLM-XComposer2 with the released ChartMoE (:mod:`.ixc2`).
:func:`load_chat_model` picks the family of what it is given; every user
path (chat, demo, evaluation, routing analysis, lmms-eval) goes through it.
Kept import-light: the families load on first use.
"""
import os.path as osp


def load_chat_model(source, config=None, device=None, dtype=None):
    """The :class:`~.base.ChatModel` of ``source``: a LLaVA-family release
    folder (``chartmoe merge``), a training checkpoint (``iter_*.pth`` or a
    DeepSpeed folder, with its training ``config``), or an IXC2 / ChartMoE
    folder or offline hub-cache repo id (``internlm/internlm-xcomposer2-
    vl-7b``, ``IDEA-FinAI/chartmoe``, ...)."""
    from xtuner_chartmoe.release.merge import RELEASE_MANIFEST
    if config is not None:
        from .llava.chat import LLaVAChat
        return LLaVAChat.from_checkpoint(config, source, device=device)
    if osp.isfile(osp.join(str(source), RELEASE_MANIFEST)):
        from .llava.chat import LLaVAChat
        return LLaVAChat.from_release(source, device=device, dtype=dtype)
    from .ixc2.chat import IXC2Chat, is_ixc2_source
    if is_ixc2_source(source):
        return IXC2Chat.from_pretrained(source, device=device, dtype=dtype)
    raise FileNotFoundError(
        f'{source}: neither a ChartMoE release ({RELEASE_MANIFEST} written by '
        '`chartmoe merge`) nor an InternLM-XComposer2 / ChartMoE folder or '
        'hub id (config.json with InternLMXComposer2ForCausalLM); for a '
        'training checkpoint give its config too')
