"""The `pitfall` command line, one module per command group, registered here in
the order `pitfall --help` lists them.

- ``common``: the app, consoles, exit codes, store openers, the flag helper
- ``options``: option definitions the commands share (sources and columns)
- ``data``: ingest, import-traces
- ``sampling``: sample, verify
- ``curation``: segment, localize, localize-eval, negatives, reweight, export
- ``run``: run, report, deploy (the curate flow)
- ``query``: sql, stats
- ``train``: train (offline fine-tunes on an export, trainers/)
- ``evaluation``: eval (pass@k of a model, kept apart from curation)

Commands only parse flags, open the store, run stages (``pipeline/stages/``)
and print their results.
"""

from __future__ import annotations

from flows.cli import curation, data, evaluation, query, run, sampling, train
from flows.cli.common import app

for group in (data, sampling, curation, run, query, train, evaluation):
    for name, command in group.COMMANDS.items():
        app.command(name)(command)

__all__ = ["app"]
