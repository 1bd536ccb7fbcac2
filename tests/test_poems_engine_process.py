"""EnginePool / EngineProcess: PoemEngine in child processes answers exactly as a request decoded alone, and keeps
the engine's bounds, cancellation, timeouts and refusals across the pipe."""
import asyncio
import time

import pytest

from genrt.decoding.scheduler import Cancelled
from genrt.poems.engine import EngineClosed, EngineFailed, EngineFull
from genrt.poems.engine_process import EnginePool, RemoteHandle
from genrt.poems.generator import PoemGenerator

TITLES = ["春江", "明月", "山水清风", "秋"]
MODES = [{}, {"num_beams": 3}, {"do_sample": True, "seed": 4}, {"mode": "continue"},
         {"do_sample": True, "best_of": 2, "num_return_sequences": 2, "seed": 1}]
LONG = {"max_new_tokens": 70, "min_new_tokens": 70, "regular_shape": False, "do_sample": False}


def _load(folder) -> dict:
    return dict(model_dir=str(folder), provider="cpu", threads=1)


@pytest.fixture(scope="module")
def pool(tiny_int8_dir):
    with EnginePool.start(_load(tiny_int8_dir), processes=2, max_rows=12) as pool:
        yield pool


def test_a_pool_answers_each_request_as_it_decodes_alone(pool, tiny_int8_dir):
    gen = PoemGenerator.load(tiny_int8_dir, provider="cpu", threads=1)
    alone = {(t, i): gen.generate(t, max_new_tokens=20, **m) for t in TITLES for i, m in enumerate(MODES)}
    assert pool.lanes == 2 and pool.max_rows == 12

    async def main():
        async def one(title, i):
            stream = i % 2 == 0 and MODES[i].get("num_return_sequences", 1) == 1
            handle = pool.submit(title, stream=stream, max_new_tokens=20, **MODES[i])
            await handle.accepted()
            text = "".join([p async for b in handle.apiece_batches() for p in b]) if stream else None
            poems = await handle.aresult()
            if stream:
                assert text == poems[0].text
            return poems
        keys = [(t, i) for t in TITLES for i in range(len(MODES))]
        return keys, await asyncio.gather(*(one(t, i) for t, i in keys))
    keys, results = asyncio.run(main())
    assert results == [alone[k] for k in keys]
    threaded = pool.submit(TITLES[0], max_new_tokens=20)                 # the blocking API too
    assert list(threaded.pieces()) and threaded.result(timeout=30) == alone[(TITLES[0], 0)]
    stats = pool.stats()
    assert stats["active_rows"] == 0 and stats["requests_finished"] >= len(keys)


def test_a_pool_generates_a_list_as_one_process_does(pool, tiny_int8_dir):
    gen = PoemGenerator.load(tiny_int8_dir, provider="cpu", threads=1)
    prompts = TITLES * 2                                       # shares of 4 and 4 over the two processes
    for options in ({}, {"num_beams": 3}, {"do_sample": True, "seed": 5}):
        assert pool.generate(prompts, max_new_tokens=20, **options) == \
            gen.generate(prompts, max_new_tokens=20, **options)
    handles = pool.submit_many(TITLES[:3], max_new_tokens=8)              # in the prompts' order
    assert [h.result(timeout=30) for h in handles] == gen.generate(TITLES[:3], max_new_tokens=8)
    with pytest.raises(ValueError, match="num_beams"):
        pool.generate(TITLES, num_beams=0)
    with pytest.raises(ValueError, match="not one string"):
        pool.submit_many("春江")


def test_refusals_come_from_accepted_and_the_result(pool):
    async def main():
        handle = pool.submit("春江", num_beams=0)
        with pytest.raises(ValueError, match="num_beams"):
            await handle.accepted()
        with pytest.raises(ValueError, match="num_beams"):
            handle.result(timeout=30)
    asyncio.run(main())


def test_bad_arguments_are_refused_before_any_process_starts(tiny_int8_dir, monkeypatch):
    import genrt.poems.engine_process as ep
    monkeypatch.setattr(ep, "EngineProcess", lambda *a, **k: pytest.fail("a process was started"))
    for bad, match in (({"processes": 0}, "processes must be a positive integer"),
                       ({"processes": "2"}, "processes"), ({"processes": None}, "processes"),
                       ({"max_rows": 0}, "max_rows"), ({"max_queued": 0}, "max_queued"),
                       ({"timeout": True}, "timeout"), ({"stats_interval": 0}, "stats_interval")):
        with pytest.raises(ValueError, match=match):
            EnginePool.start(_load(tiny_int8_dir), **{"processes": 1, **bad})
    with pytest.raises(ValueError, match="load must be a dict"):
        EnginePool.start(None, processes=1)


def test_prompts_as_a_generator_and_options_that_cannot_cross_the_pipe(pool):
    assert [p[0].text for p in pool.generate((t for t in TITLES[:2]), max_new_tokens=8)] == \
        [p[0].text for p in pool.generate(TITLES[:2], max_new_tokens=8)]
    with pytest.raises(ValueError, match="plain values"):
        pool.submit("春江", seed=lambda: 1)


def test_the_queue_bound_holds_across_the_pipe(tiny_int8_dir):
    with EnginePool.start(_load(tiny_int8_dir), processes=1, max_rows=1, max_queued=1) as pool:
        blocker = pool.submit("春江", stream=True, **LONG)
        next(iter(blocker.pieces()))                                  # it holds the only row now

        async def main():
            handles = [pool.submit(t, **LONG) for t in TITLES]          # one may wait; the others are refused
            outcomes = await asyncio.gather(*(h.accepted() for h in handles), return_exceptions=True)
            return handles, outcomes
        handles, outcomes = asyncio.run(main())
        refused = [o for o in outcomes if isinstance(o, EngineFull)]
        assert 1 <= len(refused) < len(TITLES) and all(o is None or isinstance(o, EngineFull) for o in outcomes)
        for handle, outcome in zip(handles, outcomes):
            if outcome is None:
                assert handle.result(timeout=60)
        assert blocker.result(timeout=60)


def test_cancel_and_timeout_free_rows(tiny_int8_dir):
    with EnginePool.start(_load(tiny_int8_dir), processes=1, max_rows=4) as pool:
        long = pool.submit("春江", num_beams=4, **{**LONG, "do_sample": False})
        long.cancel()
        with pytest.raises(Cancelled):
            long.result(timeout=30)
        assert pool.submit("明月", max_new_tokens=5).result(timeout=30)
        assert pool.stats()["active_rows"] == 0
    with EnginePool.start(_load(tiny_int8_dir), processes=1, timeout=1e-6) as pool:
        with pytest.raises(TimeoutError, match="longer than 1e-06 s"):
            pool.submit("春江", **LONG).result(timeout=30)


def test_close_drains_then_refuses(tiny_int8_dir):
    pool = EnginePool.start(_load(tiny_int8_dir), processes=2)
    handles = [pool.submit(t, **LONG) for t in TITLES]
    pool.close(drain=True)
    assert all(len(h.result(timeout=0)) == 1 for h in handles)      # answered before close returned
    with pytest.raises(EngineClosed):
        pool.submit("春江")
    assert not any(e._process.is_alive() for e in pool.engines)


def _until(condition, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_a_process_that_dies_fails_its_requests_and_is_replaced(tiny_int8_dir):
    pool = EnginePool.start(_load(tiny_int8_dir), processes=1, max_rows=4)
    try:
        before = pool.stats()["requests_finished"]
        assert pool.generate(["明月"], max_new_tokens=8) and pool.stats()["requests_finished"] == before + 1
        handle = pool.submit("春江", num_beams=4, **{**LONG, "max_new_tokens": 120, "min_new_tokens": 120})
        dead = pool.engines[0]
        dead._process.kill()
        with pytest.raises(EngineFailed, match=r"stopped unexpectedly \(exit code -9\)"):
            handle.result(timeout=30)
        assert _until(lambda: pool.stats()["restarts"] == 1 and pool.alive)
        assert pool.engines[0] is not dead and pool.stats()["processes_alive"] == 1
        assert pool.stats()["requests_finished"] >= before + 1            # a counter never falls
        gen = PoemGenerator.load(tiny_int8_dir, provider="cpu", threads=1)
        assert pool.generate(["明月"], max_new_tokens=8) == gen.generate(["明月"], max_new_tokens=8)
    finally:
        pool.close(timeout=10)


def test_a_childs_counters_never_fall_whatever_order_its_reports_arrive_in():
    from genrt.poems.engine_process import later_stats
    newer = {"tokens_generated": 131, "steps": 20, "requests_finished": 3, "active_rows": 8, "queued": 0}
    older = {"tokens_generated": 59, "steps": 9, "requests_finished": 1, "active_rows": 4, "queued": 2}
    assert later_stats(newer, older) == {**older, "tokens_generated": 131, "steps": 20, "requests_finished": 3}


def test_while_no_process_runs_requests_fail_naming_why(tiny_int8_dir, tmp_path, caplog):
    pool = EnginePool.start(_load(tiny_int8_dir), processes=1, max_rows=4)
    pool._load = _load(tmp_path)                               # no model there: every replacement fails to start
    pool.engines[0]._process.kill()
    assert _until(lambda: not pool.alive)
    with pytest.raises(EngineFailed, match=r"exit code -9\); another is starting"):
        pool.submit("明月")
    with pytest.raises(EngineFailed, match="exit code -9"):
        pool.submit_many(["明月", "春江"])
    assert pool.stats()["processes_alive"] == 0 and pool.stats()["restarts"] == 0
    handle = pool.engines[0]._handles.get(0) or RemoteHandle(pool.engines[0], 0)
    handle.cancel()                                            # a handle of a dead process: nothing to raise
    start = time.monotonic()
    pool.close(timeout=10)                                     # also stops the tries to replace it
    assert time.monotonic() - start < 15
    with pytest.raises(EngineClosed):
        pool.submit("明月")


def test_counters_reach_the_parent_while_a_request_streams_nothing(tiny_int8_dir):
    with EnginePool.start(_load(tiny_int8_dir), processes=1, max_rows=8, stats_interval=0.002) as pool:
        handle = pool.submit("春江", num_beams=8, **LONG)
        seen = set()                                  # tokens counted while the request still decodes
        deadline = time.monotonic() + 30
        while not handle.done and time.monotonic() < deadline:
            stats = pool.stats()
            if stats["active_rows"] == 8 and not handle.done:
                seen.add(stats["tokens_generated"])
            time.sleep(0.001)
        assert handle.result(timeout=30) and len(seen) >= 2, seen


def test_a_model_that_cannot_load_is_one_error(tmp_path):
    with pytest.raises(RuntimeError, match="the poem engine process failed: .*manifest"):
        EnginePool.start(dict(model_dir=str(tmp_path), provider="cpu", threads=1), processes=2)


def test_a_request_that_cannot_be_sent_leaves_no_handle_behind(pool):
    """Options that cannot cross the pipe are refused at submit, and no handle is left counting as in flight; a
    pool's list is all or none (the shares already sent are cancelled)."""
    before = [e.in_flight for e in pool.engines]
    with pytest.raises(Exception, match="pickle"):
        pool.engines[0].submit("春江", seed=lambda: 1)
    with pytest.raises(Exception, match="pickle"):
        pool.submit_many(["春江", "明月"], seed=lambda: 1)
    deadline = time.monotonic() + 30
    while [e.in_flight for e in pool.engines] != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e.in_flight for e in pool.engines] == before


def test_close_with_a_timeout_stops_a_child_that_hangs(tiny_int8_dir):
    import os
    import signal
    pool = EnginePool.start(_load(tiny_int8_dir), processes=1)
    handle = pool.submit("春江", **LONG)
    engine = pool.engines[0]
    os.kill(engine._process.pid, signal.SIGSTOP)                 # a child that no longer answers
    start = time.monotonic()
    pool.close(drain=True, timeout=0.5)
    assert time.monotonic() - start < 15 and not engine._process.is_alive() and not engine.alive
    with pytest.raises(EngineClosed, match="process has stopped"):
        handle.result(timeout=5)
