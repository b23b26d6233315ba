"""The remote code of an IXC2 / ChartMoE release folder.

The folder's ``auto_map`` names this package's own IXC2 classes
(:class:`~xtuner_chartmoe.families.ixc2.IXC2Config`,
:class:`~xtuner_chartmoe.families.ixc2.IXC2ForCausalLM`: InternLM-XComposer2,
arXiv 2401.16420, with ChartMoE's MoE connector, arXiv 2409.03277), whose
files :func:`write_remote_code` copies next to the weights, as
``release/hf_native.py`` copies its code, so that::

    AutoModel.from_pretrained(folder, trust_remote_code=True)

loads the folder where xtuner_chartmoe is not installed. The copies import
only each other: the family's absolute imports of the connector's modules
(``from xtuner_chartmoe.model.<module> import ...``) become imports of the
sibling copies; any other import of the package stops the write.
"""
import ast
import os.path as osp
import re

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
# (folder in the package, file): the family's model code and the MoE
# connector's, which it builds ChartMoE's vision_proj from.
CODE_FILES = (('families/ixc2', 'errors.py'),
              ('families/ixc2', 'configuration_ixc2.py'),
              ('families/ixc2', 'modeling_internlm2_plora.py'),
              ('families/ixc2', 'modeling_vision.py'),
              ('families/ixc2', 'modeling_ixc2.py'),
              ('model', 'configuration_moe_projector.py'),
              ('model', 'modeling_moe_projector.py'),
              ('model', 'moe_block.py'),
              ('model', 'routers.py'))
MODEL_MODULE = 'modeling_ixc2'
AUTO_MAP = {
    'AutoConfig': 'configuration_ixc2.IXC2Config',
    'AutoModel': 'modeling_ixc2.IXC2ForCausalLM',
    'AutoModelForCausalLM': 'modeling_ixc2.IXC2ForCausalLM',
}
CONNECTOR_IMPORT = re.compile(r'^from xtuner_chartmoe\.model\.(\w+) import',
                              re.MULTILINE)
PACKAGE_IMPORT = re.compile(r'^\s*(from|import)\s+xtuner_chartmoe\b',
                            re.MULTILINE)
RELATIVE_IMPORT = re.compile(r'^\s*from\s+\.(\w+)\s+import', re.MULTILINE)
PIN_NOTE = '''
# transformers copies a local folder's remote module with its direct
# relative imports only: the other files it needs are imported here for that.
'''


def _first_public_name(code, path):
    """The first public top-level class or function of ``code``."""
    for node in ast.parse(code, path).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and \
                not node.name.startswith('_'):
            return node.name
    raise ValueError(f'{path}: no public class or function to import')


def remote_code():
    """``{file name: code}`` of the folder: :data:`CODE_FILES` with the
    connector imports made relative, the model module importing every other
    file directly."""
    files = {}
    for folder, name in CODE_FILES:
        path = osp.join(PACKAGE_DIR, folder, name)
        with open(path) as f:
            code = CONNECTOR_IMPORT.sub(r'from .\1 import', f.read())
        if PACKAGE_IMPORT.search(code):
            raise ValueError(f'{path}: imports xtuner_chartmoe beyond the '
                             'connector modules; a release folder must run '
                             'without the package')
        files[name] = code
    model_file = MODEL_MODULE + '.py'
    direct = set(RELATIVE_IMPORT.findall(files[model_file]))
    pins = [f'from .{name[:-3]} import '
            f'{_first_public_name(code, name)}  # noqa: E402,F401\n'
            for name, code in files.items()
            if name != model_file and name[:-3] not in direct]
    if pins:
        files[model_file] += PIN_NOTE + ''.join(pins)
    return files


def write_remote_code(folder):
    """Write :func:`remote_code` into ``folder``; returns the ``auto_map``
    for its ``config.json``."""
    for name, code in remote_code().items():
        with open(osp.join(folder, name), 'w') as f:
            f.write(code)
    return dict(AUTO_MAP)
