"""kafka-ps tables: shards, keys, the value codec, update rules and clocks."""
