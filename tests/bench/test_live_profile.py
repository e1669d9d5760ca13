"""bench.live_profile's summary of py-spy's raw (folded) output: per process, self and inclusive shares."""
from __future__ import annotations

from bench.live_profile import summarize


def test_folded_stacks_are_summed_per_process_and_frame(tmp_path):
    raw = tmp_path / "profile.txt"
    raw.write_text(
        'process 1:"worker";run (streams/cli/worker.py:133);make_durable (streams/worker/applier.py:147) 30\n'
        'process 1:"worker";run (streams/cli/worker.py:133);select (selectors.py:468) 70\n'
        'process 2:"sequencer";forward (streams/worker/sequencer.py:180) 5\n'
        'not a stack line\n')
    text = summarize(raw, top=5)
    worker, sequencer = text.split("\n== ")[1:]
    assert worker.startswith('process 1:"worker": 100 samples')
    assert "70.0%  select (selectors.py:468)" in worker and "30.0%  make_durable" in worker
    assert "100.0%  run (streams/cli/worker.py:133)" in worker, "inclusive: every sample passed through run"
    assert sequencer.startswith('process 2:"sequencer": 5 samples') and "100.0%  forward" in sequencer
