"""Long property tests of the allocators: ``python -m pytest -m long``.

Not part of the default run (see ``tests/conftest.py``). Each test drives
random operation sequences (one Hypothesis example each, several CPUs'
operations interleaved by SimPy where the allocator is concurrent) and
checks after every batch and at teardown that nothing overlaps, nothing
leaks, every page and PTE is accounted for and every lock is released.
The shared checks are in :mod:`tests.long.harness`.
"""
