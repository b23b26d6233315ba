"""Command-line options that name a model (a release, or a training config
and its checkpoint), shared by the tools; importing this module is cheap, so
a tool can check its other inputs before loading torch and XTuner."""


def add_model_arguments(parser, prefix='', required=True, what='the model'):
    """``--{prefix}release`` or ``--{prefix}config`` + ``--{prefix}checkpoint``
    (a training config and its ``iter_*.pth`` / DeepSpeed folder)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(f'--{prefix}release',
                       help=f'merged release folder of {what}, or an '
                       'InternLM-XComposer2 / ChartMoE folder or hub id')
    group.add_argument(f'--{prefix}config',
                       help=f'training config of {what} (with '
                       f'--{prefix}checkpoint)')
    parser.add_argument(f'--{prefix}checkpoint',
                        help='checkpoint of that config')


def load_chat(args, prefix='', device=None):
    """The :class:`~xtuner_chartmoe.families.base.ChatModel` named by
    :func:`add_model_arguments`' options (raises ValueError when the config
    has no checkpoint)."""
    from xtuner_chartmoe.families import load_chat_model
    get = lambda name: getattr(args, f'{prefix}{name}'.replace('-', '_'))
    if get('release'):
        return load_chat_model(get('release'), device=device)
    if not get('checkpoint'):
        raise ValueError(f'--{prefix}config needs --{prefix}checkpoint')
    return load_chat_model(get('checkpoint'), config=get('config'),
                           device=device)
