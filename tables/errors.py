"""The root of every error kafka-ps raises on purpose, and the two the command line shares.

Catch :class:`KafkaPsError` to handle anything kafka-ps reports about its input, its
settings or its broker; anything else is a bug. The exit status ``kps`` ends with when one
stops it is the command line's business (``app/cli_errors.py``), not the raiser's.
"""

from __future__ import annotations


class KafkaPsError(Exception):
    """A failure kafka-ps reports in one line, not a bug."""


class UsageError(KafkaPsError):
    """A bad option or setting."""


class BrokerError(KafkaPsError):
    """The broker does not answer or refuses."""
