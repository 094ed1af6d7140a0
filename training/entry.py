"""The training job's entry point: the source dir's ``train.py``, run as ``python train.py --name value ...``
from the source dir's root (SageMaker's working directory and import root)."""

from training.train import cli

if __name__ == "__main__":
    cli()
