"""Starts the real multi-model-server the way the Hugging Face inference image does, on temp paths.

Run with the toolkit's environment (``.venv-toolkit/bin/python mms_launcher.py CONFIG_FILE``), with
``SAGEMAKER_BASE_DIR`` (the model in ``$SAGEMAKER_BASE_DIR/model``), ``SAGEMAKER_BIND_TO_PORT`` and the
handler's settings in the environment. It returns once ``multi-model-server --start`` has spawned the
Java frontend, which keeps running in this process's group; ``multi-model-server --stop`` (same
``TMPDIR``) ends it.

The image's entry point calls ``sagemaker_huggingface_inference_toolkit.serving.main()`` →
``mms_model_server.start_model_server()``. That function cannot run as is outside a container: it
writes ``/etc/sagemaker-mms.properties``, binds 0.0.0.0, and then waits on the one MMS process it finds
among all of the machine's processes. So this reproduces its non-multi-model, non-Hub branch step by
step, with the toolkit's own helpers and constants, and changes exactly two things: the properties file
is CONFIG_FILE instead of /etc/sagemaker-mms.properties, and the addresses are 127.0.0.1 instead of
0.0.0.0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sagemaker_huggingface_inference_toolkit import mms_model_server
from sagemaker_inference import environment, model_server


def main(config_file: str) -> None:
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    model_server._set_python_path()  # <model_dir>/code first on PYTHONPATH
    properties = model_server._generate_mms_config_properties(
        environment.Environment(), mms_model_server.DEFAULT_HANDLER_SERVICE
    )
    properties = properties.replace("http://0.0.0.0:", "http://127.0.0.1:")
    Path(config_file).write_text(properties)
    if os.path.exists(model_server.REQUIREMENTS_PATH):
        model_server._install_requirements()  # pip install -r <model_dir>/code/requirements.txt
    command = [
        "multi-model-server",
        "--start",
        "--model-store",
        mms_model_server.DEFAULT_MODEL_STORE,
        "--mms-config",
        config_file,
        "--log-config",
        model_server.DEFAULT_MMS_LOG_FILE,
        "--models",
        f"{model_server.DEFAULT_MMS_MODEL_NAME}={environment.model_dir}",
    ]
    print("starting:", " ".join(command), flush=True)
    print(properties, flush=True)
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main(sys.argv[1])
