from setuptools import find_packages, setup

# The dependency set verified on CPU (see README): torch and torchvision are
# pinned together because letting pip pick torchvision pulls a CUDA torch.
INSTALL_REQUIRES = [
    'torch==2.13.0',
    'torchvision==0.28.0',
    'xtuner==0.2.0',
    'transformers==4.48.0',
    'mmengine==0.10.6',
    'peft==0.21.2',
    'tokenizers==0.21.4',
    'matplotlib>=3.8',
    'tqdm',
    'rich',
]

setup(
    name='xtuner-chartmoe',
    version='0.1.0',
    description='ChartMoE-style MoE connectors for LLaVA models on XTuner',
    packages=find_packages(include=['xtuner_chartmoe', 'xtuner_chartmoe.*']),
    python_requires='>=3.10',
    install_requires=INSTALL_REQUIRES,
    extras_require={
        'demo': ['gradio>=5,<6', 'huggingface_hub==0.36.2'],
        'test': ['pytest', 'selenium'],
    },
    entry_points={'console_scripts': ['chartmoe = xtuner_chartmoe.cli:main']},
)
