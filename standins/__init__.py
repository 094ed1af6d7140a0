"""Local stand-ins, shared by the tests and the benchmarks: generated audio and tiny random-init models.

Everything here is made on the spot from code and the configs in ``training/configs``; nothing downloads
weights or data. ``modeldir`` builds model directories as train.py writes them; ``synthetic`` writes
labelled audiofolder data sets. Not part of the SageMaker source dir (``ml_code/``), and nothing here
may import from ``tests`` (tests/test_repository.py checks it).
"""
