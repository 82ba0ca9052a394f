"""Where the libraries' own messages go: a log file beside the store, unless --verbose.

vLLM, Prefect, transformers, torch and Python warnings print dozens of lines per
model start (hundreds per run); the console keeps pitfall's progress bars,
tables and errors. Everything they say still lands in the file, with its
process id, so a problem can be read there.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

LOG_FILE = "pitfall.log"  # in a `logs` folder beside the store
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
# read by vLLM, transformers, datasets and huggingface_hub when they are imported,
# in this process and in the workers and engine processes it starts
# (not TRANSFORMERS_VERBOSITY: above warning, the trainer hides its progress bar)
QUIET_ENV = {
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TORCH_CPP_LOG_LEVEL": "ERROR",  # torch's C++ warnings (NUMA binding) print from C++
}
# tqdm bars of the libraries (vLLM's checkpoint loader); not for `train`, whose bar is
# the trainer's progress
NO_BARS = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # the latter: transformers'

LIBRARIES = ("prefect", "vllm", "transformers", "torch", "datasets", "trl", "ray", "py.warnings")


def log_path(store: Path) -> Path:
    return store.parent / "logs" / LOG_FILE


def route_to_file(path: Path, bars: bool = False) -> None:
    """Send the libraries' logging and Python warnings to ``path``, not the console.

    Must run before vLLM is imported (its logging is configured at import, from
    VLLM_LOGGING_CONFIG_PATH); Prefect's console handlers exist already, so they
    are turned down in place, and its API handler keeps sending run logs to the UI.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    vllm_config = path.with_name("vllm-logging.json")
    vllm_config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"plain": {"format": FORMAT}},
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(path),
                        "formatter": "plain",
                        "encoding": "utf-8",
                    }
                },
                "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
            }
        ),
        encoding="utf-8",
    )
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(vllm_config)
    for key, value in (QUIET_ENV | ({} if bars else NO_BARS)).items():
        os.environ.setdefault(key, value)
    from prefect.logging.handlers import APILogHandler

    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.captureWarnings(True)
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        for h in logger.handlers:
            if not isinstance(h, APILogHandler | logging.FileHandler):
                h.setLevel(logging.CRITICAL + 1)  # a console handler of its own: silent
        logger.addHandler(handler)
        logger.propagate = False  # not up to the root logger's console handler
