from setuptools import find_packages, setup

# As loose as XTuner's own requirements: torch and torchvision unpinned (a
# user's CUDA build stays), the versions XTuner pins as XTuner pins them.
# The exact CPU set of the README's set-up: requirements/constraints-cpu.txt.
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
    'deepspeed': ['deepspeed==0.16.2'],
    'eval': ['lmms-eval>=0.7,<0.8'],
    'demo': ['gradio>=5,<6', 'huggingface_hub<1.0'],
    'test': ['pytest', 'selenium'],
}

# The repository keeps configs/ and tools/ at the top; the distribution
# ships them inside the package (as XTuner ships xtuner/configs), so that
# `chartmoe list-cfg` and every `chartmoe <tool>` work after any install.
MAPPED = {'configs': 'xtuner_chartmoe.configs', 'tools': 'xtuner_chartmoe.tools'}
PACKAGES = find_packages(include=['xtuner_chartmoe', 'xtuner_chartmoe.*'])
for folder, package in MAPPED.items():
    PACKAGES += [package] + [f'{package}.{sub}' for sub in
                             find_packages(where=folder)]

setup(
    name='xtuner-chartmoe',
    version='0.2.0',
    description='ChartMoE-style MoE connectors for LLaVA models on XTuner',
    packages=PACKAGES,
    package_dir={package: folder for folder, package in MAPPED.items()},
    package_data={'xtuner_chartmoe': ['lmms_tasks/*/*.yaml',
                                      'hf_native_code/*.py']},
    python_requires='>=3.10',
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        'console_scripts': ['chartmoe = xtuner_chartmoe.cli:main'],
        'lmms_eval.models': ['chartmoe = xtuner_chartmoe.lmms:manifest'],
    },
)
