"""AcousticShield's SageMaker source directory.

Every module here runs two ways: as the SageMaker containers run it (this folder is the working
directory and import root, ``python train.py``) and as the ``ml_code`` package (tests and
``python -m ml_code.<tool>``). Sibling imports therefore use the ``if __package__`` form.
"""
