"""Packaging for the generalizable prompt-learning toolkit (DiSa and baselines on CLIP).

The repository keeps the CoOp layout (``train.py``, ``trainers/``, ``datasets/``, ``configs/``,
``scripts/`` at the top level) so that it is a drop-in for CoOp habits; ``pip install -e .``
makes the libraries importable from anywhere as well.
"""
from setuptools import find_packages, setup

setup(
    name="disa-toolkit",
    version="0.2.0",
    description="DiSa and baselines (CoOp, CoCoOp, KgCoOp, MaPLe, IVLP, PromptSRC, DAPT, DPL) "
    "for generalizable prompt learning on CLIP, with a Dassl-compatible engine",
    python_requires=">=3.9",
    # Only the namespaced package ``disakit`` is installed (never top-level ``trainers`` or
    # ``datasets``, which would shadow other distributions such as Hugging Face ``datasets``).
    # ``disakit/trainers``, ``disakit/datasets`` and ``disakit/configs`` are links to the
    # repository's top-level folders, which keep the CoOp layout.
    packages=find_packages(include=["disakit", "disakit.*"]),
    package_data={"disakit": ["configs/*/*.yaml", "configs/*/*/*.yaml",
                              "disakit/runkit/published_numbers.csv"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "openai-clip>=1.0",
        "packaging",
        "yacs>=0.1.8",
        "tabulate",
        "tqdm",
        "numpy",
        "Pillow",
        "scipy",
        "matplotlib",
        "submitit>=1.5",
    ],
    extras_require={"test": ["pytest"]},
)
