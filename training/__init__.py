"""The training job: SageMaker runs the source dir's ``train.py`` (``training/entry.py``), which runs
``training.train``. The source dir also carries the serving code, which the job ships onward into the
model's ``code/``.
"""
