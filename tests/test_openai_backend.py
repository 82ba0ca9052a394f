"""The OpenAI-compatible backend against a fake server: concurrency, failures,
deadlines and credentials (issue 11, items 11-14).

The fake server is a real HTTP server on 127.0.0.1 in a thread that speaks the
OpenAI completions and chat JSON; requests go through the real ``openai``
client. It answers after a fixed delay and fails on cue: a fault is chosen by a
marker in the prompt (HTTP 400, a body that is not JSON, ``choices: []``,
``text: null``, an HTML page, 503, or no answer at all).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from pipeline.sampling import Request, SamplingParams, request_seed
from pipeline.store import Store
from tests.conftest import PREFECT_HOME, REPO

PARAMS = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=64, seed=0, template="raw")
SECRET = "planted-s3cret-9f2c"
USERINFO = f"pitfall-user:{SECRET}@"


@dataclass
class Call:
    prompt: str
    seed: int
    auth: str | None
    started: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of connections,
    # and the client waits 1 s to send them again
    request_queue_size = 128


class FakeServer:
    """``faults[marker]`` is a list of behaviours for prompts containing ``marker``,
    used in turn; the last one stays. Behaviours: ok, 400, 503, not-json,
    no-choices, text-null, html, hang."""

    def __init__(self, delay: float = 0.0, api_key: str | None = None):
        self.delay = delay
        self.api_key = api_key
        self.faults: dict[str, list[str]] = {}
        self.calls: list[Call] = []
        self.in_flight = self.max_in_flight = 0
        self.release = threading.Event()  # ends every hanging call
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                server._handle(self)

            def log_message(self, *args):
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def calls_for(self, marker: str) -> list[Call]:
        return [c for c in self.calls if marker in c.prompt]

    def _behaviour(self, prompt: str) -> str:
        with self._lock:
            for marker, plan in self.faults.items():
                if marker in prompt:
                    return plan.pop(0) if len(plan) > 1 else plan[0]
        return "ok"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        chat = h.path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        behaviour = self._behaviour(prompt)
        auth = h.headers.get("Authorization")
        with self._lock:
            self.calls.append(Call(prompt, body.get("seed"), auth, time.monotonic()))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.api_key and auth != f"Bearer {self.api_key}":
                return _send(h, 401, {"error": {"message": "Incorrect API key provided"}})
            if behaviour == "hang":
                self.release.wait(120)
                h.close_connection = True
                return
            time.sleep(self.delay)
            text = f"Let me think.\n\nThe answer is \\boxed{{{body.get('seed', 0) % 3}}}."
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}}
                if chat
                else {"index": 0, "text": text, "logprobs": None}
            ) | {"finish_reason": "stop"}
            ok = {
                "id": "cmpl-fake",
                "object": "chat.completion" if chat else "text_completion",
                "created": 0,
                "model": body["model"],
                "choices": [choice],
                "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16},
            }
            if behaviour == "ok":
                _send(h, 200, ok)
            elif behaviour in ("400", "503"):
                message = "maximum context length is 512 tokens" if behaviour == "400" else "busy"
                _send(h, int(behaviour), {"error": {"message": message, "code": behaviour}})
            elif behaviour == "not-json":
                _send(h, 200, b'{"choices": [{"text": "cut off')
            elif behaviour == "no-choices":
                _send(h, 200, ok | {"choices": []})
            elif behaviour == "text-null":
                if chat:
                    choice["message"]["content"] = None
                else:
                    choice["text"] = None
                _send(h, 200, ok)
            elif behaviour == "html":
                page = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
                _send(h, 200, page, "text/html")
            else:
                raise AssertionError(behaviour)
        finally:
            with self._lock:
                self.in_flight -= 1


def _send(h, status: int, body, content_type: str = "application/json") -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def backend(url: str, **options):
    from pipeline.backends.openai_backend import OpenAIBackend

    return OpenAIBackend("fake-teacher", base_url=url, **options)


# ------------------------------------------------------- item 11: concurrency


def test_every_call_is_in_flight_at_once_bounded_by_concurrency(server):
    engine = backend(server.url(), concurrency=8)
    engine.generate([Request("warm-up", 1, seed=0)], PARAMS)  # imports openai: ~1 s, not timed
    server.delay = 0.3
    requests = [Request(f"problem {i}", 1, seed=i) for i in range(12)]
    t0 = time.perf_counter()
    results = engine.generate(requests, PARAMS)
    wall = time.perf_counter() - t0
    assert [len(r) for r in results] == [1] * 12
    served = sum(c.latency_s for r in results for c in r)
    # one request at a time: 12 x 0.3 = 3.6 s; eight at once: two waves, ~0.6 s
    assert served >= 12 * 0.3 * 0.95
    assert wall < 1.5, f"12 calls of 0.3 s took {wall:.2f} s"
    assert server.max_in_flight == 8
    # the calls of several requests go together too (more than one request's 4), never
    # more than concurrency
    server.max_in_flight = 0
    results = engine.generate([Request(f"many {i}", 4, seed=10 * i) for i in range(3)], PARAMS)
    assert [len(r) for r in results] == [4, 4, 4]
    assert server.max_in_flight == 8
    # each sample is its own call with seed + j, answered in the request's order
    seeds = sorted(c.seed for c in server.calls_for("many 1"))
    assert seeds == [10, 11, 12, 13]
    assert [c.text for c in results[1]] == [
        f"Let me think.\n\nThe answer is \\boxed{{{s % 3}}}." for s in seeds
    ]


# ---------------------------------------------------------- item 12: failures


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_each_response_is_validated_and_failures_classified(server, endpoint):
    from pipeline.sampling import Completion, Failed, GenerationFailed

    server.faults = {
        "[400]": ["400"],
        "[not-json]": ["not-json"],
        "[no-choices]": ["no-choices"],
        "[text-null]": ["text-null"],
        "[html]": ["html"],
        "[503-once]": ["503", "ok"],
        "[html-once]": ["html", "ok"],
    }
    markers = ["[ok]", *server.faults]
    engine = backend(server.url(), endpoint=endpoint, retries=2, backoff_s=0.01)
    with pytest.raises(GenerationFailed) as caught:
        engine.generate([Request(f"problem {m}", 2, seed=1) for m in markers], PARAMS)
    results = dict(zip(markers, caught.value.results, strict=True))
    for marker in ("[ok]", "[503-once]", "[html-once]"):  # retried until they passed
        assert [type(c) for c in results[marker]] == [Completion, Completion], marker
    reasons = {m: r.reason for m, r in results.items() if isinstance(r, Failed)}
    assert set(reasons) == {"[400]", "[not-json]", "[no-choices]", "[text-null]", "[html]"}
    assert reasons["[400]"] == "HTTP 400: maximum context length is 512 tokens"
    assert reasons["[not-json]"].startswith("invalid response: not JSON (application/json")
    assert reasons["[no-choices]"] == "invalid response: no choices"
    assert reasons["[text-null]"] == "invalid response: the completion text is null"
    assert reasons["[html]"].startswith("invalid response: not JSON (text/html")
    # a 400 is not sent again; a malformed answer is, up to the retries
    assert len(server.calls_for("[400]")) <= 2
    assert len(server.calls_for("[not-json]")) > 2


def test_a_refused_key_stops_at_once(server):
    from pipeline.sampling import ServerUnavailable

    server.api_key = "the-right-key"
    os.environ["PITFALL_TEST_WRONG_KEY"] = "a-wrong-key"
    try:
        engine = backend(server.url(), api_key_env="PITFALL_TEST_WRONG_KEY", concurrency=2)
        with pytest.raises(ServerUnavailable, match="HTTP 401: Incorrect API key"):
            engine.generate([Request(f"p {i}", 4, seed=i) for i in range(20)], PARAMS)
    finally:
        del os.environ["PITFALL_TEST_WRONG_KEY"]
    assert len(server.calls) < 10  # not 80 refused calls


PROBLEMS = {
    "ok-a": ("Start with 1. Add 1. What is the result?", "2"),
    "ok-b": ("Start with 2. Subtract 1. What is the result?", "1"),
    "ok-c": ("Start with 3. Subtract 3. What is the result?", "0"),
    "400": ("Start with 4. Multiply by 999. What is the result? [400]", "3996"),
    "not-json": ("Start with 5. Add 7. What is the result? [not-json]", "12"),
    "no-choices": ("Start with 6. Add 8. What is the result? [no-choices]", "14"),
    "text-null": ("Start with 7. Add 9. What is the result? [text-null]", "16"),
    "html": ("Start with 8. Add 1. What is the result? [html]", "9"),
}
FAULTY = [k for k in PROBLEMS if not k.startswith("ok-")]


def write_setup(folder: Path, url: str, problems: dict, **teacher) -> Path:
    data = folder / "problems.jsonl"
    data.write_text(
        "".join(json.dumps({"problem": p, "answer": a}) + "\n" for p, a in problems.values())
    )
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in teacher.items())
    config = folder / "pitfall.toml"
    config.write_text(
        f"""
[store]
path = "{folder / "store.duckdb"}"
[teacher]
backend = "openai"
model = "fake-teacher"
base_url = "{url}"
endpoint = "chat"
max_tokens = 64
retries = 1
{extra}
[verify]
workers = 1
[dart]
strategy = "fixed"
n_fixed = 8
round_size = 4
[negatives]
kinds = ["outcome"]
[export]
dir = "{folder / "export"}"
[run]
inputs = ["{data}"]
on_locked = "exit"
"""
    )
    return config


@pytest.mark.slow
def test_failed_requests_are_recorded_the_rest_committed_and_a_rerun_retries_them(
    server, pitfall, tmp_path
):
    server.faults = {f"[{k}]": [k] for k in FAULTY}
    config = write_setup(tmp_path, server.url(), PROBLEMS)
    pitfall("--config", config, "ingest", tmp_path / "problems.jsonl")
    first = pitfall("--config", config, "sample")
    assert "failed requests 5" in first.output
    assert "1 × HTTP 400: maximum context length is 512 tokens" in first.output
    with Store.reader(pitfall.store) as s:
        failed = s.query(
            "SELECT p.problem, f.first_index, f.n, f.reason FROM failed_requests f "
            "JOIN problems p USING (problem_id) ORDER BY p.problem"
        )
        traces = s.query(
            "SELECT p.problem, count(*) AS n, max(t.sample_index) AS top FROM traces t "
            "JOIN problems p USING (problem_id) GROUP BY 1"
        )
        status = s.query("SELECT status, summary FROM runs WHERE command = 'sample'").row(0)
    assert sorted(failed["problem"].str.extract(r"\[(.+)\]").to_list()) == sorted(FAULTY)
    assert set(failed["first_index"]) == {0} and set(failed["n"]) == {4}
    assert all(r.startswith(("HTTP 400", "invalid response")) for r in failed["reason"])
    # the other problems finished both rounds: nothing of theirs was thrown away
    assert dict(zip(traces["problem"], traces["n"], strict=True)) == {
        PROBLEMS[k][0]: 8 for k in ("ok-a", "ok-b", "ok-c")
    }
    assert status[0] == "ok"
    assert sum(json.loads(status[1])["detail"]["failed requests"].values()) == 5
    # a failing problem was asked once in this run (its first request), not every round
    with Store.reader(pitfall.store) as s:
        ids = dict(s.query("SELECT problem, problem_id FROM problems").iter_rows())
    pid = ids[PROBLEMS["400"][0]]
    first_request = {request_seed(0, pid, 0) + j for j in range(4)}
    assert {c.seed for c in server.calls_for("[400]")} <= first_request

    # the server is fixed: the rerun asks for exactly the failed requests, same seeds
    server.faults = {}
    before = len(server.calls)
    second = pitfall("--config", config, "sample")
    assert "failed requests" not in second.output
    asked = server.calls[before:]
    assert {c.prompt for c in asked} == {PROBLEMS[k][0] for k in FAULTY}
    second_request = {request_seed(0, pid, 4) + j for j in range(4)}
    assert {c.seed for c in asked if "[400]" in c.prompt} == first_request | second_request
    with Store.reader(pitfall.store) as s:
        indices = s.query(
            "SELECT problem_id, list(sample_index ORDER BY sample_index) AS idx FROM traces "
            "GROUP BY 1"
        )
    assert indices.height == len(PROBLEMS)
    assert all(idx == list(range(8)) for idx in indices["idx"].to_list())


# ---------------------------------------------------------- item 13: deadline


def test_a_hanging_server_ends_the_call_at_its_deadline(server):
    from pipeline.sampling import ServerUnavailable

    server.faults = {"[hang]": ["hang"]}
    # 4 s: the fine call must be answered within it even at a load of 17 on 2 cores
    # (at 1.5 s it was not, 2026-12-06); the bound above leaves the same slack
    engine = backend(server.url(USERINFO), timeout_s=4.0, retries=3, backoff_s=0.05)
    requests = [Request("fine", 2, seed=1), Request("[hang]", 2, seed=2)]
    t0 = time.perf_counter()
    with pytest.raises(ServerUnavailable) as caught:
        engine.generate(requests, PARAMS)
    took = time.perf_counter() - t0
    assert 3.9 < took < 10.0, f"gave up after {took:.1f} s, deadline 4 s"
    message = str(caught.value)
    assert "no answer within timeout_s = 4 s" in message
    assert f"http://***@127.0.0.1:{server.httpd.server_address[1]}/v1" in message
    assert SECRET not in message
    # what finished before is handed back
    assert len(caught.value.results[0]) == 2 and caught.value.results[1] is None


# slow: the fine samples may be verified (worker processes) before the hang's
# deadline ends the stage, when the call outlasts a flush interval
@pytest.mark.slow
def test_sample_stops_with_one_clear_line_and_keeps_what_finished(server, pitfall, tmp_path):
    server.faults = {"[hang]": ["hang"]}
    problems = {
        "ok-a": PROBLEMS["ok-a"],
        "ok-b": PROBLEMS["ok-b"],
        "hang": ("Start with 9. Add 9. What is the result? [hang]", "18"),
    }
    # 4 s, as above: the fine calls are answered within it on a busy machine
    config = write_setup(tmp_path, server.url(USERINFO), problems, timeout_s=4.0)
    pitfall("--config", config, "ingest", tmp_path / "problems.jsonl")
    result = pitfall("--config", config, "sample", ok=False)
    returned = time.monotonic()
    hung = server.calls_for("[hang]")[0].started
    assert result.exit_code == 1, result.output
    # the hang holds its connection for 120 s: a command that waited for it shows
    assert returned - hung < 4.0 + 30.0, f"ended {returned - hung:.1f} s after the hang began"
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert "no answer within timeout_s = 4 s" in errors[0]
    assert f"openai server http://***@127.0.0.1:{server.httpd.server_address[1]}/v1" in errors[0]
    assert SECRET not in result.output
    with Store.reader(pitfall.store) as s:
        kept = s.query("SELECT count(*) FROM traces").item()
        status = s.query("SELECT status FROM runs WHERE command = 'sample'").item()
    assert kept == 8 and status == "failed"  # both fine problems' first round


# --------------------------------------------------------- item 14: secrets


def _env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PITFALL_")}
    return e | {"PREFECT_HOME": PREFECT_HOME, "PYTHONPATH": str(REPO)}


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "--config", str(config), *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _store_hits(path: Path, needle: str) -> list[str]:
    """Every text cell of every table of the store that contains ``needle``."""
    hits = []
    with Store.reader(path) as s:
        columns = s.query(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND data_type IN ('VARCHAR', 'JSON')"
        )
        for table, column in columns.iter_rows():
            n = s.query(
                f'SELECT count(*) FROM "{table}" WHERE "{column}"::VARCHAR LIKE $n',
                {"n": f"%{needle}%"},
            ).item()
            if n:
                hits.append(f"{table}.{column}")
    return hits


def _folder_hits(folder: Path, needle: str) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            text = pl.read_parquet(path).write_ndjson()
        else:
            text = path.read_bytes().decode("utf-8", "replace")
        if needle in text:
            hits.append(str(path))
    return hits


@pytest.mark.slow  # two `pitfall run`s, each starting a Prefect API server
def test_credentials_in_base_url_are_never_stored_logged_or_sent_to_prefect(server, tmp_path):
    url = server.url(USERINFO)
    config = write_setup(tmp_path, url, {k: PROBLEMS[k] for k in ("ok-a", "ok-b", "ok-c")})
    store = tmp_path / "store.duckdb"
    outputs = []
    for args in (("ingest", str(tmp_path / "problems.jsonl")), ("sample", "--max-rounds", "1")):
        done = _cli(config, *args, *(("--backend", "openai") if args[0] == "sample" else ()))
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stderr[-3000:]
    ran = _cli(
        config,
        "run",
        *("--stage", "ingest", "--stage", "sample", "--stage", "negatives"),
        *("--stage", "reweight", "--stage", "export"),
    )
    outputs.append(ran.stdout + ran.stderr)
    assert ran.returncode == 0, ran.stderr[-3000:]
    # the server is gone: the error names it, without the credentials, in both commands
    server.close()
    more = tmp_path / "more.toml"  # 4 more samples per problem
    more.write_text(config.read_text().replace("n_fixed = 8", "n_fixed = 12"))
    for args in (("sample",), ("run", "--stage", "sample")):
        gone = _cli(more, *args)
        outputs.append(gone.stdout + gone.stderr)
        assert gone.returncode == 1 and "Traceback" not in gone.stderr, gone.stderr[-3000:]
        said = f"error: sampling stopped: openai server {server.url('***@')}: cannot connect"
        assert any(line.startswith(said) for line in gone.stderr.splitlines()), gone.stderr

    # the flow reached the server with the real credentials
    basic = "Basic " + base64.b64encode(USERINFO[:-1].encode()).decode()
    assert server.calls and {c.auth for c in server.calls} == {basic}
    with Store.reader(store) as s:
        assert s.query("SELECT count(*) FROM traces").item() == 24
        configs = s.query("SELECT command, config FROM runs ORDER BY started_at").rows()
    assert [c for c, _ in configs] == ["ingest", "sample", "run", "sample", "run"]
    assert all(json.loads(cfg)["teacher"]["base_url"] == server.url("***@") for _, cfg in configs)

    assert _store_hits(store, SECRET) == []
    assert [o for o in outputs if SECRET in o] == []
    assert _folder_hits(tmp_path / "export", SECRET) == []
    assert (tmp_path / "export" / "README.md").is_file()
    # Prefect's database holds the flow-run parameters and logs: redacted only
    assert _folder_hits(Path(PREFECT_HOME), server.url("***@"))
    assert _folder_hits(Path(PREFECT_HOME), SECRET) == []


def test_deployment_parameters_are_redacted_and_the_flow_gets_the_real_url(tmp_path, monkeypatch):
    from flows.cli.run import curate_deployment
    from pipeline.config import ConfigError, flow_settings, load_settings, secret_env

    url = f"http://{USERINFO}127.0.0.1:9/v1"
    settings = load_settings(write_setup(tmp_path, url, {"ok-a": PROBLEMS["ok-a"]}))
    deployment = curate_deployment(settings, "0 3 * * *", "nightly")
    shown = json.dumps(deployment.parameters)
    assert SECRET not in shown and "http://***@127.0.0.1:9/v1" in shown
    overrides = deployment.parameters["overrides"]
    with pytest.raises(ConfigError, match="PITFALL_TEACHER__BASE_URL"):
        flow_settings(None, overrides)  # a served run without the variable
    for name, value in secret_env(settings).items():
        monkeypatch.setenv(name, value)
    assert flow_settings(None, overrides).teacher.base_url == url


def test_the_dataset_card_shows_no_credentials():
    from pipeline.export import Provenance, dataset_card

    teacher = {"model": f"http://{USERINFO}models.example/teacher", "params": "{}"}
    loc = {"method": "mc-binary", "traces": 0, "first_errors": 0, "rollouts": 0}
    provenance = Provenance(
        teachers=[teacher | {"origin": "sampled", "traces": 1, "tokens": 1}],
        verifier="v",
        localization=loc | {"rollout_tokens": 0},
        dart={},
        sft_recipe="all/none",
        runs=[],
        version="0",
    )
    card = dataset_card([], provenance)
    assert SECRET not in card and "http://***@models.example/teacher" in card
