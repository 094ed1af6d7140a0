"""The endpoint's code: the inference toolkit imports the model's ``code/inference.py``
(``serving/entry.py``), which hands the toolkit the handler functions of ``serving.inference``.
"""
