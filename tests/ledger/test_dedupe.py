"""dedupe.py: bounded FIFO memory, persistent versions (older versions unchanged)."""
from streams.ledger.dedupe import AppliedIds


def test_bounded_fifo_and_versions():
    memory = AppliedIds(3)
    versions = [memory]
    for n in range(10):
        versions.append(versions[-1].add(f"e{n}", f"f{n}"))
    last = versions[-1]
    assert list(last) == ["e7", "e8", "e9"] and last.get("e6") is None and last.get("e9") == "f9"
    assert versions[2].get("e1") == "f1" and versions[2].get("e2") is None  # old version unchanged
    branch = versions[2].add("x", "fx")  # branching from an old version copies its window
    assert list(branch) == ["e0", "e1", "x"] and last.get("x") is None
    readded = last.add("e0", "g0")  # re-adding an evicted id
    assert readded.get("e0") == "g0" and versions[1].get("e0") == "f0"


def test_memory_stays_bounded():
    memory = AppliedIds(4)
    for n in range(1000):
        memory = memory.add(str(n), "f")
    assert len(memory._entries) < 8 and len(memory) == 4
