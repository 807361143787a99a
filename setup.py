"""Install the `dassl` engine (and its dependencies) for the few-shot CLIP toolkit.

Only `dassl` is installed as a package. `datasets/` and `trainers/` stay in the
repository and are imported from it (train.py, `python -m datasets.check`), so an
install never shadows Hugging Face `datasets` or any other top-level package.
"""
from setuptools import find_packages, setup

setup(
    name="taskres",
    version="0.1.0",
    description="Few-shot adaptation of CLIP: TaskRes, CoOp, CLIP-Adapter on a Dassl-compatible engine",
    python_requires=">=3.9",
    packages=find_packages(include=["dassl", "dassl.*"]),
    install_requires=[
        "torch",
        "torchvision",
        "yacs",
        "openai-clip",
        "setuptools<81",  # clip imports pkg_resources
        "ftfy",
        "regex",
        "tqdm",
        "tabulate",
        "numpy",
        "pillow",
    ],
    extras_require={
        "plot": ["matplotlib"],
        "tensorboard": ["tensorboard"],
        "slurm": ["submitit"],
        "test": ["pytest", "pytest-timeout", "matplotlib", "submitit"],
    },
)
