"""kafka-ps application layer: settings, the Faust app, topics, codecs, CLI and client SDK."""
