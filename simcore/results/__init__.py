"""The results folder, the text summary, the report and charts.

Layer: beside ``engine`` (neither imports the other), above ``config``. It
reads finished runs (:class:`simcore.metrics.RunResult`) and
``metrics.json``; it never runs a simulation (``api`` and ``sweep`` do).
"""
