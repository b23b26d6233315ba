import os
import re
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

# As loose as XTuner's own requirements: torch and torchvision unpinned (a
# user's CUDA build stays), the versions XTuner pins as XTuner pins them.
# Upper bounds only where a newer release is known to break us.
# The exact, tested CPU set: requirements/lock-cpu.txt (tools/setup_env.sh).
INSTALL_REQUIRES = [
    'torch',
    'torchvision',
    'xtuner>=0.2.0,<0.3',
    'transformers==4.48.0',
    'mmengine==0.10.6',
    'peft>=0.14.0',
    'matplotlib>=3.8',
    'tqdm',
    'rich',
]
EXTRAS_REQUIRE = {
    # 0.19 drops deepspeed.utils.zero_to_fp32's helpers mmengine imports.
    'deepspeed': ['deepspeed>=0.14,<0.19'],
    # filelock 4.3 removed filelock._api, which lmms-eval 0.7 imports.
    'eval': ['lmms-eval>=0.7,<0.8', 'filelock<4.3'],
    'demo': ['gradio>=5,<6', 'huggingface_hub<1.0'],
    'test': ['pytest', 'selenium'],
}

# The repository keeps configs/ at the top; the distribution ships them
# inside the package (as XTuner ships xtuner/configs), so that `chartmoe
# list-cfg` works after any install. The commands live in
# xtuner_chartmoe/commands (tools/*.py are shims for a checkout).
MAPPED = {'configs': 'xtuner_chartmoe.configs'}
PACKAGES = find_packages(include=['xtuner_chartmoe', 'xtuner_chartmoe.*'])
for folder, package in MAPPED.items():
    PACKAGES += [package] + [f'{package}.{sub}' for sub in
                             find_packages(where=folder)]

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'xtuner_chartmoe', '__init__.py')) as f:
    VERSION = re.search(r"^__version__ = '([^']+)'", f.read(), re.M)[1]

# The start-up file of the compatibility fixes (xtuner_chartmoe/compat.py):
# shipped at the top of the wheel, so installing the package (wheel,
# `pip install .` or `-e .`) puts it into site-packages and uninstalling
# removes it.
START_UP_FILE = 'xtuner_chartmoe_compat.pth'


class BuildPyWithStartUpFile(build_py):
    """build_py that also puts the start-up file at the wheel's top."""

    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, START_UP_FILE),
                       os.path.join(self.build_lib, START_UP_FILE))

    def get_outputs(self, *args, **kwargs):
        return super().get_outputs(*args, **kwargs) + [
            os.path.join(self.build_lib, START_UP_FILE)]


class EditableWheelWithStartUpFile(editable_wheel):
    """editable_wheel that also puts the start-up file at the wheel's top:
    what the editable strategies write beside their own ``.pth`` lands in
    site-packages (setuptools writes namespace ``.pth`` files there the same
    way)."""

    def run(self):
        if not hasattr(editable_wheel, '_install_namespaces'):
            import setuptools
            raise RuntimeError(
                f'setuptools {setuptools.__version__} has no editable_wheel.'
                '_install_namespaces, through which an editable install '
                'ships the start-up file; build with setuptools 64 to 84.2.1 '
                '(tested)')
        super().run()

    def _install_namespaces(self, installation_dir, pth_prefix):
        super()._install_namespaces(installation_dir, pth_prefix)
        shutil.copyfile(os.path.join(HERE, START_UP_FILE),
                        os.path.join(installation_dir, START_UP_FILE))


setup(
    name='xtuner-chartmoe',
    version=VERSION,
    description='ChartMoE-style MoE connectors for LLaVA models on XTuner',
    packages=PACKAGES,
    package_dir={package: folder for folder, package in MAPPED.items()},
    package_data={'xtuner_chartmoe': ['apps/lmms_tasks/*/*.yaml',
                                      'apps/lmms_tasks/*/*.py',
                                      'release/hf_native_code/*.py']},
    python_requires='>=3.10',
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    cmdclass={'build_py': BuildPyWithStartUpFile,
              'editable_wheel': EditableWheelWithStartUpFile},
    entry_points={
        'console_scripts': ['chartmoe = xtuner_chartmoe.commands.cli:main'],
        'lmms_eval.models': ['chartmoe = xtuner_chartmoe.apps.lmms:manifest'],
    },
)
