import time
from datetime import timedelta

from forkyard.kit.clock import Clock


def test_a_frozen_clock_moves_only_when_advanced():
    c = Clock()
    c.freeze()
    now, mono = c.now(), c.monotonic()
    time.sleep(0.02)
    assert (c.now(), c.monotonic()) == (now, mono)
    c.advance(timedelta(seconds=5))
    assert c.now() - now == timedelta(seconds=5) and c.monotonic() - mono == 5
    c.reset()
    time.sleep(0.01)
    assert c.now() > now - timedelta(seconds=1) and c.now() != now
