"""Where the libraries' messages go (flows/cli/logs.py), in a process of its own:
routing changes the process's logging for good."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # a Python process with Prefect imported


def test_library_logs_and_warnings_go_to_the_file_and_ours_stay(tmp_path):
    log = tmp_path / "logs" / "pitfall.log"
    script = textwrap.dedent(f"""
        import logging, warnings
        from flows.cli.logs import route_to_file
        from pathlib import Path
        route_to_file(Path({str(log)!r}))
        logging.getLogger("prefect.client").warning("a prefect line")
        logging.getLogger("transformers.modeling_utils").warning("a transformers warning")
        logging.getLogger("vllm").warning("a vllm warning")
        warnings.warn("a python warning", FutureWarning)
        logging.getLogger("pipeline.sampling").warning("pitfall's own warning")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    text = log.read_text()
    for line in ("a prefect line", "a transformers warning", "a vllm warning", "a python warning"):
        assert line in text and line not in done.stderr, line
    assert "pitfall's own warning" in done.stderr and "pitfall's own warning" not in text
    assert (tmp_path / "logs" / "vllm-logging.json").is_file()
