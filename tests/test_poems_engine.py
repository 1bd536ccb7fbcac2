"""PoemEngine: many threads, one decoder loop; every request gets exactly what it gets alone."""
import asyncio
import random
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrt.decoding.scheduler import Cancelled
from genrt.poems.engine import EngineClosed, EngineFull, PoemEngine
from genrt.poems.generator import PoemGenerator

TITLES = ["春江", "明月", "山水清风", "秋", "白云深山人家", "花"]
MODES = [{}, {"num_beams": 3}, {"do_sample": True, "seed": 4}, {"do_sample": False}, {"mode": "continue"},
         {"form": "wujue"}, {"do_sample": True, "best_of": 2, "num_return_sequences": 2, "seed": 1}]


@pytest.fixture(scope="module", params=[("tiny_poems_dir", 1), ("tiny_int8_dir", 1), ("tiny_int8_dir", 2)],
                ids=["fp32", "int8", "int8-2-lanes"])
def gen(request):
    folder, threads = request.param
    return PoemGenerator.load(request.getfixturevalue(folder), provider="cpu", threads=threads)


@pytest.fixture(scope="module")
def alone(gen):
    """What each (title, mode) gives decoded by itself."""
    return {(t, i): gen.generate(t, max_new_tokens=20 if "form" not in m else 128, **m)
            for t in TITLES for i, m in enumerate(MODES)}


def _options(i):
    return {"max_new_tokens": 20 if "form" not in MODES[i] else 128, **MODES[i]}


def test_eight_threads_with_random_arrivals_get_what_each_request_gets_alone(gen, alone):
    results, errors = {}, []
    with PoemEngine(gen, max_rows=12) as engine:
        def client(k):
            rnd = random.Random(k)
            try:
                for n in range(5):
                    key = (rnd.choice(TITLES), rnd.randrange(len(MODES)))
                    time.sleep(rnd.random() * 0.01)
                    handle = engine.submit(key[0], **_options(key[1]))
                    text = "".join(handle.pieces()) if rnd.random() < 0.5 else None
                    poems = handle.result()
                    results[(k, n)] = (key, poems)
                    if text is not None:
                        assert text == poems[0].text
            except Exception as e:           # surfaced below: an assertion in a thread would be lost
                errors.append(e)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = engine.stats()
    assert not errors, errors
    assert len(results) == 40 and all(poems == alone[key] for key, poems in results.values())
    assert stats["requests_finished"] == 40 and stats["active_rows"] == 0 and stats["queued"] == 0
    assert stats["steps"] < sum(len(p[0].text) + 2 for _, p in results.values())   # requests shared steps


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(range(len(TITLES))), st.sampled_from(range(len(MODES))),
                          st.integers(0, 6)), min_size=1, max_size=7))
def test_any_arrival_schedule_gives_each_request_its_own_result(gen, alone, schedule):
    """Requests submitted after random numbers of engine steps (joining others mid-way) decode as alone."""
    with PoemEngine(gen, max_rows=8) as engine:
        handles = []
        for title, mode, wait_steps in schedule:
            target = engine.stats()["steps"] + wait_steps
            deadline = time.monotonic() + 2
            while engine.stats()["steps"] < target and engine.stats()["active_rows"] and time.monotonic() < deadline:
                time.sleep(0.0005)
            handles.append(((TITLES[title], mode), engine.submit(TITLES[title], **_options(mode))))
        for key, handle in handles:
            assert handle.result() == alone[key]


def test_cancel_and_timeout_free_rows(gen):
    with PoemEngine(gen, max_rows=4) as engine:
        long = engine.submit("春江", num_beams=4, max_new_tokens=70, min_new_tokens=70, regular_shape=False)
        long.cancel()                                        # before it could finish its 70 steps
        waiting = engine.submit("明月", max_new_tokens=5)
        with pytest.raises(Cancelled):
            long.result(timeout=10)
        assert waiting.result(timeout=10)                    # the freed rows let it in
        assert engine.stats()["active_rows"] == 0
    with PoemEngine(gen, timeout=1e-6) as engine:           # expired before its first step
        slow = engine.submit("春江", num_beams=4, max_new_tokens=70, min_new_tokens=70, regular_shape=False)
        with pytest.raises(TimeoutError, match="longer than 1e-06 s"):
            slow.result(timeout=10)
        assert engine.stats()["active_rows"] == 0


def test_bounds_and_bad_input_are_refused_before_queueing(gen):
    engine = PoemEngine(gen, max_rows=4, max_queued=2)
    with pytest.raises(ValueError, match="num_beams"):
        engine.submit("春江", num_beams=0)
    with pytest.raises(ValueError, match="needs 6 decoder rows; this engine holds at most 4"):
        engine.submit("春江", num_beams=6)
    with pytest.raises(ValueError, match="prompt must be a string"):
        engine.submit(["春江"])
    engine._lock.acquire()                                    # hold the loop: nothing leaves the queue
    try:
        engine._lanes[-1].incoming.extend([object(), object()])
        with pytest.raises(EngineFull, match="2 requests are already waiting"):
            engine.submit("春江")
        engine._lanes[-1].incoming.clear()
    finally:
        engine._lock.release()
    engine.close()
    with pytest.raises(EngineClosed):
        engine.submit("春江")
    for bad in ({"max_rows": 0}, {"max_queued": True}, {"timeout": -1}, {"timeout": True}, {"timeout": "60"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PoemEngine(gen, **bad)
    with pytest.raises(ValueError, match="takes a PoemGenerator"):
        PoemEngine(None)


def test_submit_many_takes_any_iterable_and_result_names_a_bad_timeout(gen):
    with PoemEngine(gen, max_rows=8) as engine:
        handles = engine.submit_many((t for t in TITLES[:2]), max_new_tokens=8)
        assert [h.result() for h in handles] == gen.generate(TITLES[:2], max_new_tokens=8)
        for bad in ("1", -1, True):
            with pytest.raises(ValueError, match="timeout must be None or a number of seconds"):
                handles[0].result(timeout=bad)
        for bad, match in ((5, "a list of strings, got int"), (["春江", 5], "a prompt must be a string, got int"),
                           ({"春江": 1}, "a list of strings, got dict")):
            with pytest.raises(ValueError, match=match):
                engine.submit_many(bad)


def test_prompts_submitted_together_join_one_step_as_generate_list_does(gen):
    prompts, options = TITLES[:4], {"max_new_tokens": 20, "do_sample": True, "seed": 3}
    with PoemEngine(gen, max_rows=12) as engine:
        with engine._lock:                                    # hold the loop: all are queued before a step
            handles = engine.submit_many(prompts, **options)
            assert sum(len(lane.incoming) for lane in engine._lanes) == len(prompts)
        assert [h.result() for h in handles] == gen.generate(prompts, **options)
        assert engine.generate(prompts, num_beams=2, max_new_tokens=12) == \
            gen.generate(prompts, num_beams=2, max_new_tokens=12)
        assert engine.submit_many([]) == []


def test_prompts_submitted_together_are_queued_all_or_none(gen):
    engine = PoemEngine(gen, max_rows=4, max_queued=3)
    with engine._lock:                                        # hold the loop: nothing leaves the queue
        engine._lanes[-1].incoming.extend([object(), object()])
        with pytest.raises(EngineFull, match="2 requests are already waiting; 2 more would pass the limit of 3"):
            engine.submit_many(["春江", "明月"])
        assert sum(len(lane.incoming) for lane in engine._lanes) == 2
        engine._lanes[-1].incoming.clear()
    with pytest.raises(ValueError, match="a list of prompts, not one string"):
        engine.submit_many("春江")
    with pytest.raises(ValueError, match="prompt must be a string, got int"):
        engine.submit_many(["春江", 3])
    engine.close()


def test_requests_go_to_the_lane_with_the_fewest_rows(gen):
    if gen.model.lanes < 2:
        pytest.skip("a one-lane model")
    engine = PoemEngine(gen, max_rows=8)
    assert engine.lanes == gen.model.lanes == 2
    with engine._lock:                                        # hold the loops: requests stay where they were sent
        for title, options in (("春江", {"num_beams": 3}), ("明月", {}), ("山水清风", {})):
            engine.submit(title, do_sample=False, **options)
        assert [sum(h.request.rows for h in lane.incoming) for lane in engine._lanes] == [3, 2]
    engine.close()


def test_close_drains_or_cancels_what_is_in_flight(gen, alone):
    engine = PoemEngine(gen)
    handles = [engine.submit(t, **_options(1)) for t in TITLES]
    engine.close(drain=True)
    assert [h.result(timeout=0) for h in handles] == [alone[(t, 1)] for t in TITLES]
    engine = PoemEngine(gen)
    handles = [engine.submit(t, max_new_tokens=70, min_new_tokens=70, regular_shape=False) for t in TITLES]
    engine.close(drain=False)
    for h in handles:
        assert h.done
        if h.request.error is not None:
            with pytest.raises(Cancelled, match="engine was closed"):
                h.result()


def test_asyncio_clients(gen, alone):
    async def main(engine):
        async def one(title):
            handle = engine.submit(title, **_options(2))
            text = "".join([piece async for piece in handle.apieces()])
            poems = await handle.aresult()
            assert text == poems[0].text
            return poems
        return await asyncio.gather(*(one(t) for t in TITLES))
    with PoemEngine(gen) as engine:
        assert asyncio.run(main(engine)) == [alone[(t, 2)] for t in TITLES]


def test_async_piece_batches_make_the_poem_and_wake_each_loop_once_per_step(gen, alone, monkeypatch):
    """Streams read as batches (what a server writes at once) give the same text; waiters on one event loop
    are woken by one call per lane step, not one per request."""
    import genrt.poems.engine as engine_module
    calls = []
    real_wake = engine_module.wake
    monkeypatch.setattr(engine_module, "wake", lambda listeners: (calls.append(len(listeners)),
                                                                  real_wake(listeners)))

    async def main(engine):
        async def one(title):
            handle = engine.submit(title, **_options(0))
            batches = [b async for b in handle.apiece_batches()]
            assert all(batches)                                        # no empty batch
            return "".join(p for b in batches for p in b), await handle.aresult()
        return await asyncio.gather(*(one(t) for t in TITLES))
    with PoemEngine(gen) as engine:
        for text, poems in asyncio.run(main(engine)):
            assert text == poems[0].text
        steps = engine.stats()["steps"]
    assert len([c for c in calls if c]) <= steps and max(calls) > 1      # several waiters woken by one call


def test_async_pieces_time_out_at_the_deadline(gen):
    """A stream whose next piece has not come by the deadline raises TimeoutError (here: queued behind requests
    that hold every row, with the deadline already passed)."""
    long = {"max_new_tokens": 70, "min_new_tokens": 70, "regular_shape": False, "do_sample": False}

    async def main(engine):
        handle = engine.submit(TITLES[0], **long)
        with pytest.raises(TimeoutError):
            async for _ in handle.apieces(deadline=time.monotonic()):
                pass
        handle.cancel()
    with PoemEngine(gen, max_rows=1) as engine:
        blockers = [engine.submit(TITLES[1], **long) for _ in range(engine.lanes)]
        asyncio.run(main(engine))
        assert all(b.result() for b in blockers)


def test_paced_batches_come_an_interval_apart_and_the_end_is_not_held(gen, alone):
    async def main(engine, interval):
        handle = engine.submit(TITLES[2], **_options(0))
        times, batches = [], []
        async for batch in handle.apiece_batches(interval=interval):
            times.append(time.monotonic())
            batches.append(batch)
        return times, batches, await handle.aresult()
    with PoemEngine(gen) as engine:
        times, batches, poems = asyncio.run(main(engine, 0.01))
        assert "".join(p for b in batches for p in b) == poems[0].text and poems == alone[(TITLES[2], 0)]
        assert all(b - a >= 0.0099 for a, b in zip(times, times[1:]))
        start = time.monotonic()
        times, batches, poems = asyncio.run(main(engine, 30.0))      # the end cuts a 30 s pause short
        assert time.monotonic() - start < 20 and "".join(p for b in batches for p in b) == poems[0].text


def test_a_failing_watcher_does_not_stop_the_engine(gen, alone, caplog):
    class Broken:
        def changed(self, handles):
            raise RuntimeError("a watcher bug")
    with PoemEngine(gen) as engine:
        handle = engine.submit(TITLES[0], max_new_tokens=70, min_new_tokens=70, regular_shape=False)
        handle.watch(Broken(), pieces=True)                  # 70 steps: it is still running when watched
        assert len(handle.result(timeout=30)[0].text) >= 70
        assert "a watcher bug" in caplog.text
        assert engine.submit(TITLES[1], **_options(0)).result(timeout=30) == alone[(TITLES[1], 0)]


def test_a_model_failure_fails_its_step_s_requests_and_the_engine_goes_on(gen, alone, monkeypatch):
    real_step, calls = gen.model.step, []

    def failing_once(tokens, cache):
        calls.append(len(tokens))
        if len(calls) == 3:
            raise RuntimeError("decoder failed")
        return real_step(tokens, cache)
    monkeypatch.setattr(gen.model, "step", failing_once)
    with PoemEngine(gen, timeout=30) as engine:
        doomed = engine.submit(TITLES[0], max_new_tokens=70, min_new_tokens=70, regular_shape=False)
        with pytest.raises(RuntimeError, match="decoder failed"):
            doomed.result(timeout=10)
        with pytest.raises(RuntimeError, match="decoder failed"):     # a reader of its pieces ends too
            list(doomed.pieces())
        assert engine.stats()["active_rows"] == 0 and engine.stats()["queued"] == 0
        assert engine.submit(TITLES[1], **_options(0)).result(timeout=30) == alone[(TITLES[1], 0)]
    assert all(lane.rows == 0 for lane in engine._lanes) and not engine._handles and not engine._deadlines
