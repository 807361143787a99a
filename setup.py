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
        "torch>=2.3",  # torch.amp.GradScaler("cuda") (CoOp's amp precision)
        "torchvision>=0.18",  # the release paired with torch 2.3
        "yacs",
        "pyyaml",  # dataset configs read by the planner and TaskRes' strong_base layout
        "openai-clip",
        "setuptools<81",  # clip imports pkg_resources
        "ftfy",
        "regex",
        "tqdm",
        "tabulate",
        "numpy",
        "pillow",
        "pandas>=1.3",  # results tables
        "scikit-learn>=1.0",  # the linear-probe baseline (logistic regression)
        "safetensors",  # feature-cache shards (trainers/common/tensor_store.py)
        "filelock",  # cache and decoded-image store builders take turns
        "open-clip-torch>=3.0,<4",  # open_clip:ARCH/TAG backbones (trainers/common/open_clip_loader.py)
    ],
    extras_require={
        "plot": ["matplotlib"],  # parse_results.py --plot, the demo's figure
        "tensorboard": ["tensorboard"],
        "slurm": ["submitit"],  # python -m experiments --launcher slurm (the local launcher needs none)
        "matlab-splits": ["scipy"],  # Stanford Cars' original .mat annotations
        "siglip": ["transformers"],  # the Hugging Face tokenizers of open_clip's SigLIP / SigLIP 2 models
        "test": ["pytest", "pytest-timeout", "pytest-xdist", "matplotlib", "submitit", "mkdocs", "transformers"],
    },
)
