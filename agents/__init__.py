"""kafka-ps agents: worker and server agents and the models written against them."""
