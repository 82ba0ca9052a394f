"""`pitfall report --html`: the report of a real run's store, opened in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings

import pytest

from tests.conftest import REPO
from tests.curated_run import cli, env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PLOTS = ("difficulty", "first-errors", "localize-cost", "pairs", "evals", "runs")
# the flags the machine's closed network needs (no background fetches, no sandbox as root)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def report(reference, tmp_path_factory):
    """The session's reference run's store (conftest), with two evaluations added,
    rendered to HTML."""
    folder = tmp_path_factory.mktemp("report")
    store = folder / "store.duckdb"
    shutil.copy(reference["store"], store)
    problems = folder / "problems.jsonl"
    problems.write_text((reference["folder"] / "problems.jsonl").read_text())
    config = reference["folder"] / "pitfall.toml"
    run_env = env() | {"PITFALL_TEACHER__BACKEND": "transformers"}
    for model in ("toy-teacher", "toy-student"):
        evaluated = subprocess.run(
            cli(config, "--store", str(store), "eval", "--model", str(REPO / "data/models" / model),
                "--problems", str(problems), "--n", "2", "--k", "1,2"),
            env=run_env, capture_output=True, text=True,
        )  # fmt: skip
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    page = folder / "report.html"
    done = subprocess.run(
        cli(config, "--store", str(store), "report", "--html", str(page)),
        env=env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return page


def test_the_report_is_one_self_contained_file(report):
    text = report.read_text()
    # nothing to fetch when opened: no script, stylesheet, image or font from anywhere
    # (url(#id) is an SVG's reference to its own clip path)
    for needle in ("<script", "<link", "src=", "@import"):
        assert needle not in text, needle
    assert not re.search(r"url\((?!#)", text)
    assert text.count("<figure class='plot'") == len(PLOTS)


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not found (Debian: apt-get install chromium)"
)
def test_every_plot_renders_in_headless_chromium(report, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) missing")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=FLAGS, env=os.environ | {"HOME": str(tmp_path)}
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request: {r.url}"))
        page.goto(report.as_uri())
        sizes = page.evaluate(
            """ids => ids.map(id => {
                const svg = document.querySelector(`#plot-${id} svg`);
                if (!svg) return null;
                const box = svg.getBoundingClientRect();
                const marks = svg.querySelectorAll('path, rect, use, polyline, line').length;
                return {width: box.width, height: box.height, marks: marks};
            })""",
            list(PLOTS),
        )
        shot = os.environ.get("PITFALL_REPORT_SHOT")  # to look at it, not to assert on
        if shot:
            try:
                page.screenshot(path=shot, full_page=True)
            except sync_api.Error as exc:  # Chromium can refuse one on a loaded machine
                warnings.warn(f"no screenshot: {exc}", stacklevel=1)
        browser.close()
    assert errors == []
    for name, size in zip(PLOTS, sizes, strict=True):
        assert size is not None, f"plot {name} missing"
        assert size["width"] > 300 and size["height"] > 100, (name, size)
        assert size["marks"] > 20, (name, size)  # axes alone draw about a dozen
