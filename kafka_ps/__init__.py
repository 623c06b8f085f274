"""kafka-ps: a parameter server for online machine learning, built entirely on Apache Kafka."""
