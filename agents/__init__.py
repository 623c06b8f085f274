"""kafka-ps agents: worker and server agents and the models written against them."""

from kafka_ps.tables.dead_letters import DeadLetterReason
from kafka_ps.tables.errors import KafkaPsError

__all__ = ["DeadLetterReason", "KafkaPsError"]
