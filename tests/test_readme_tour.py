"""README's tour parses, and every pitfall command in it exists with the flags it uses
(the tour itself runs with `python tests/readme_tour.py`: too long for the suite)."""

from __future__ import annotations

import shlex

from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import REPO
from tests.readme_tour import tour_commands


def test_the_tour_starts_with_make_run_and_its_pitfall_commands_parse():
    commands = tour_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert commands[0] == "make run"
    pitfall = [shlex.split(c)[1:] for c in commands if c.startswith(".venv/bin/pitfall ")]
    assert {args[0] for args in pitfall} >= {"train", "eval"}
    runner = CliRunner()
    for args in pitfall:
        command = [a for a in args if not a.startswith("--")][: 2 if args[0] == "train" else 1]
        helped = runner.invoke(app, [*command, "--help"])
        assert helped.exit_code == 0, (args, helped.output)
        for flag in (a for a in args if a.startswith("--")):
            assert flag in helped.output, (args, flag)
