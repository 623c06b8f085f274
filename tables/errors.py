"""The root of every error kafka-ps raises on purpose, and the two the command line shares.

Catch :class:`KafkaPsError` to handle anything kafka-ps reports about its input, its
settings or its broker; anything else is a bug. ``code`` is the exit status ``kps`` ends
with when the error stops it (the table of codes is in ``app/cli_errors.py``).
"""

from __future__ import annotations


class KafkaPsError(Exception):
    """A failure kafka-ps reports in one line, not a bug."""

    code = 2


class UsageError(KafkaPsError):
    """A bad option or setting."""

    code = 2


class BrokerError(KafkaPsError):
    """The broker does not answer or refuses."""

    code = 5
