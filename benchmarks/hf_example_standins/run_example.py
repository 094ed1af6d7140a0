"""Runs the transformers example ``run_speech_recognition_ctc.py`` offline, for benchmarks/speech.py only.

    python benchmarks/hf_example_standins/run_example.py PATH/TO/run_speech_recognition_ctc.py [its arguments]

The example's own file is run unchanged (``runpy``), with these STAND-INS, applied here and nowhere else;
each one applied prints a line starting with ``MARKER`` and a JSON description, which the benchmark records:

- ``evaluate``: this folder is first on ``sys.path``, so ``import evaluate`` finds ``evaluate.py`` beside
  this file (WER and CER with jiwer) instead of the package that downloads its metrics from the Hub.
- ``Trainer.train(resume_from_checkpoint=FOLDER)`` where FOLDER holds no ``trainer_state.json``: the example
  passes its ``--model_name_or_path`` as a checkpoint to resume from whenever it is a local folder, as every
  offline starting checkpoint is. transformers 4 then loaded the folder's weights again (the ones the model
  was just loaded from) and began at step 0; transformers 5 requires the trainer state and stops. The
  stand-in starts afresh instead (``resume_from_checkpoint=None``), which trains the same model as
  transformers 4 did.
- Only for an older example (written for transformers 4.50) that uses them, three names transformers 5
  removed, each with transformers 4's value: ``transformers.utils.send_example_telemetry`` (a no-op: it only
  sent usage telemetry, and the run is offline), ``TrainingArguments.overwrite_output_dir`` (``False``, the
  old default; the benchmark always passes a fresh ``--output_dir``) and ``PretrainedConfig.tokenizer_class``
  (``None`` when a config names no tokenizer class, as wav2vec2's do: the example then builds its tokenizer by
  ``tokenizer_type``). The example of transformers 5 uses none of them.
"""

from __future__ import annotations

import functools
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MARKER = "hf-example stand-in:"
TRAINER_STATE = "trainer_state.json"


def _say(name: str, what: str) -> None:
    print(f"{MARKER} {json.dumps({'name': name, 'what': what})}", flush=True)


def _evaluate() -> None:
    if str(HERE) not in sys.path[:1]:
        sys.path.insert(0, str(HERE))
    import evaluate  # the stand-in beside this file

    if not getattr(evaluate, "STAND_IN", False):
        raise RuntimeError(f"import evaluate found {evaluate.__file__}, not the stand-in in {HERE}")
    _say("evaluate", "evaluate.load('wer'/'cer') answered locally with jiwer")


def _fresh_start_without_trainer_state() -> None:
    import transformers

    original = transformers.Trainer.train

    @functools.wraps(original)
    def train(self: Any, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        if (
            isinstance(resume_from_checkpoint, str | os.PathLike)
            and Path(resume_from_checkpoint).is_dir()
            and not (Path(resume_from_checkpoint) / TRAINER_STATE).is_file()
        ):
            _say(
                "Trainer.train",
                f"resume_from_checkpoint=<a folder without {TRAINER_STATE}> started afresh (None), "
                "as transformers 4 did",
            )
            resume_from_checkpoint = None
        return original(self, resume_from_checkpoint, *args, **kwargs)

    transformers.Trainer.train = train  # type: ignore[method-assign]


def _removed_names(source: str) -> None:
    """transformers 4 names an older example uses, supplied only when it uses them and they are missing."""
    import transformers
    import transformers.utils

    if "send_example_telemetry" in source and not hasattr(transformers.utils, "send_example_telemetry"):

        def send_example_telemetry(*args: Any, **kwargs: Any) -> None:
            return None

        transformers.utils.send_example_telemetry = send_example_telemetry  # type: ignore[attr-defined]
        _say("transformers.utils.send_example_telemetry", "a no-op")
    if "overwrite_output_dir" in source and not hasattr(
        transformers.TrainingArguments, "overwrite_output_dir"
    ):
        transformers.TrainingArguments.overwrite_output_dir = False  # type: ignore[attr-defined]
        _say("TrainingArguments.overwrite_output_dir", "False")
    if "tokenizer_class" in source and not hasattr(transformers.PretrainedConfig, "tokenizer_class"):
        transformers.PretrainedConfig.tokenizer_class = None  # type: ignore[attr-defined]
        _say("PretrainedConfig.tokenizer_class", "None")


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    example = sys.argv[1]
    _evaluate()
    _fresh_start_without_trainer_state()
    _removed_names(Path(example).read_text(encoding="utf-8"))
    sys.argv = [example, *sys.argv[2:]]
    runpy.run_path(example, run_name="__main__")


if __name__ == "__main__":
    main()
