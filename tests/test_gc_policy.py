"""The garbage collector policy of the worker and the replays (streams/gc_policy.py)."""
from __future__ import annotations

import gc

import pytest

from streams import gc_policy
from streams.config import Settings
from streams.worker.main import build


@pytest.fixture(autouse=True)
def restore_collector():
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_tune_raises_the_young_threshold_and_zero_keeps_pythons():
    gc.set_threshold(700, 10, 10)
    gc_policy.tune(0)
    assert gc.get_threshold() == (700, 10, 10)
    gc_policy.tune(50_000)
    assert gc.get_threshold()[0] == 50_000


def test_bulk_raises_the_threshold_for_a_fold_and_restores_it():
    gc.set_threshold(700, 10, 10)
    with gc_policy.bulk():
        assert gc.get_threshold() == (gc_policy.BULK_GEN0_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_freeze_moves_what_is_alive_out_of_collection():
    before = gc.get_freeze_count()
    kept = [{"n": n} for n in range(1000)]
    gc_policy.freeze()
    assert gc.get_freeze_count() >= before + len(kept)


def test_the_setting_defaults_and_refuses_a_negative_threshold():
    assert Settings().gc_gen0_threshold == gc_policy.GEN0_THRESHOLD
    assert Settings.from_env({"TOKENPLAN_GC_GEN0_THRESHOLD": "0"}).gc_gen0_threshold == 0
    with pytest.raises(SystemExit):
        Settings.from_env({"TOKENPLAN_GC_GEN0_THRESHOLD": "-1"})


def test_the_worker_freezes_once_its_first_recovery_is_over(tmp_path):
    app = build(Settings.from_env({"TOKENPLAN_DATA_DIR": str(tmp_path)})).wiring.app
    assert "freeze_after_recovery" in [task.__name__ for task in app._app_tasks]
