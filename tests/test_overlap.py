"""Streams instead of rounds (issue 17): the same rows, the engine kept busy.

The transformers backend generates each request alone with its own seed, so its
stream (one request per poll, each handed back at once, the next samples of a
problem asked for as soon as its last ones are verified) and rounds (everything
queued sent in one call per wave, verification after it, as before the streams)
must store the same keys and the same texts: any difference is the scheduler's.
"""

from __future__ import annotations

import time

import pytest

from pipeline.backends.hf_backend import TransformersBackend
from pipeline.backends.stream import BatchStream
from pipeline.config import load_settings
from pipeline.overlap import drive
from pipeline.sampling import Completion, Failed, Request, ServerUnavailable
from pipeline.stages import StageContext, run_stage
from pipeline.store import Store
from tests.conftest import TEACHER
from tests.curated_run import KEYED
from tests.test_sampling import _store_with, rows_of


class Rounds:
    """A backend without a stream of its own: the driver falls back to waves of
    ``generate`` calls, which is how sampling and localization ran before."""

    def __init__(self, backend):
        self._backend, self.model = backend, backend.model

    def generate(self, requests, params):
        return self._backend.generate(requests, params)

    def render(self, problem, template):
        return self._backend.render(problem, template)


def _curate(path, backend) -> dict:
    settings = load_settings(
        None,
        {
            "teacher": {"max_tokens": 160},
            "dart": {"strategy": "uniform", "k_u": 2, "round_size": 2, "n_max": 8},
            "localize": {"k": 4, "max_tokens": 120, "per_problem": 2},
            "verify": {"workers": 2},
        },
    )
    _store_with(path, rows_of("ops3-v99", 2) + rows_of("ops5-v99", 2) + rows_of("ops8-v199", 2))
    with (
        Store.writer(path, command="run") as store,
        StageContext(store, settings, teacher=backend) as ctx,
    ):
        results = {name: run_stage(name, ctx) for name in ("sample", "segment", "localize")}
    return results


@pytest.mark.slow  # the toy teacher through transformers, twice
def test_a_stream_stores_what_rounds_store(tmp_path):
    backend = TransformersBackend(str(TEACHER))
    streamed = _curate(tmp_path / "stream.duckdb", backend)
    _curate(tmp_path / "rounds.duckdb", Rounds(backend))
    tables = ("traces", "verdicts", "steps", "rollouts", "first_errors", "difficulty")
    texts = {
        "traces": "SELECT trace_id, completion, finish_reason FROM traces ORDER BY 1",
        "rollouts": "SELECT rollout_id, completion, correct FROM rollouts ORDER BY 1",
        "first_errors": "SELECT trace_id, first_error, n_rollouts FROM first_errors ORDER BY 1",
    }
    with (
        Store.reader(tmp_path / "stream.duckdb") as a,
        Store.reader(tmp_path / "rounds.duckdb") as b,
    ):
        for table in tables:
            key = KEYED[table]
            q = f"SELECT {key} FROM {table} ORDER BY 1"
            assert a.query(q).equals(b.query(q)), table
        for table, q in texts.items():
            assert a.query(q).equals(b.query(q)), table
        assert a.query("SELECT count(*) FROM rollouts").item() > 20
    # the stream handed requests back one at a time and refilled as they came
    sampled = streamed["sample"].detail["profile"]["generate calls"]
    assert sampled["calls"] == streamed["sample"].rows_in  # one poll per request
    assert sampled["max"] > sampled["min"]


class _Scripted:
    """A stream whose requests finish one per poll, in the order they came: the
    driver's bookkeeping on its own, without an engine."""

    def __init__(self, fail_after: int | None = None):
        self.queue, self.polls, self.closed, self.fail_after = [], 0, False, fail_after

    def submit(self, items):
        self.queue.extend(items)

    @property
    def busy(self):
        return bool(self.queue)

    @property
    def sequences(self):
        return len(self.queue)

    def poll(self):
        self.polls += 1
        if self.fail_after is not None and self.polls > self.fail_after:
            raise ServerUnavailable("gone", [None] * len(self.queue))
        time.sleep(0.01)
        key, request = self.queue.pop(0)
        return [(key, [Completion(request.prompt, "stop", 1, 1, 0.0)])]

    def close(self):
        self.closed = True


def test_what_a_verified_request_leads_to_is_generated_too():
    stream, stored, verified = _Scripted(), [], []

    def on_finished(done):
        stored.extend(k for k, _ in done)
        return lambda: [k for k, _ in done]

    def on_verified(keys):
        verified.extend(keys)
        # each key k < 3 leads to k + 1: a chain that only a refill finishes
        return [(k + 1, Request(str(k + 1), 1, 0)) for k in keys if k < 3]

    drive(stream, [(0, Request("0", 1, 0))], on_finished, on_verified, flush_requests=1)
    assert stored == verified == [0, 1, 2, 3]
    assert stream.closed


def test_a_server_that_goes_away_keeps_what_finished_before():
    """Stored, not verified: the command ends at once, the next run verifies first."""
    stream, stored, verified = _Scripted(fail_after=2), [], []

    def on_finished(done):
        stored.extend(k for k, _ in done)
        return lambda: [k for k, _ in done]

    def on_verified(keys):
        verified.extend(keys)
        return [(9, Request("9", 1, 0))]  # asked for, never sent: the server is gone

    first = [(k, Request(str(k), 1, 0)) for k in range(5)]
    with pytest.raises(ServerUnavailable):
        drive(stream, first, on_finished, on_verified, flush_requests=100, flush_s=60)
    assert stored == [0, 1] and verified == []
    assert stream.closed


def test_a_failed_request_comes_back_as_failed_through_a_batch_stream():
    class Refusing:
        def generate(self, requests, params):
            from pipeline.sampling import GenerationFailed

            raise GenerationFailed("400", [Failed("bad request"), None])

    stream = BatchStream(Refusing(), None)
    stream.submit([("a", Request("a", 1, 0)), ("b", Request("b", 1, 0))])
    assert stream.poll() == [("a", Failed("bad request"))]  # b never finished: not returned
    assert not stream.busy
