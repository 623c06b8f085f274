"""RocksDB sizing for server-shard tables.

Faust opens one RocksDB per table partition with a 2 GiB block cache and three
64 MiB write buffers each: far too much for a 2-core, 24 GiB machine hosting many
partitions. These options are passed as a Faust table's ``options``.
"""

from __future__ import annotations

MiB = 1024 * 1024


def rocksdb_options(
    block_cache_mib: int = 32, write_buffer_mib: int = 8, max_open_files: int = 256
) -> dict[str, int]:
    """Options for one table partition's RocksDB, sized per partition."""
    return {
        "write_buffer_size": write_buffer_mib * MiB,
        "max_write_buffer_number": 2,
        "target_file_size_base": 16 * MiB,
        "block_cache_size": block_cache_mib * MiB,
        "block_cache_compressed_size": 0,
        "max_open_files": max_open_files,
    }
