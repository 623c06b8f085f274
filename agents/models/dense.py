"""Dense tensors stored as blocks of one length per tensor, the last block zero-padded.

A job's :class:`~agents.api.ParamRegistry` finds a key's spec by the parameter name, so
every block ``<tensor>:<i>`` of a tensor shares one shape. :class:`~tables.keys.DenseLayout`
lets the last block be shorter; here it is instead padded to the common block length, so
one spec per tensor covers every block and the keys keep the ``<tensor>:<i>`` layout. A
tensor that fits in one block is stored at its exact size (no padding). Padding elements
always get a zero gradient, so they keep their initial value; a reader of the model
rebuilds the tensor by concatenating its blocks and keeping the first ``size`` elements
(:meth:`BlockedTensor.join`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kafka_ps.agents.api import ParamSpec
from kafka_ps.tables.init import ParamInit
from kafka_ps.tables.keys import DenseLayout
from kafka_ps.tables.update_rules import UpdateRule


@dataclass(frozen=True)
class BlockedTensor:
    """One dense tensor of a model: its layout, spec, keys, and block (de)composition.

    Parameters
    ----------
    layout
        How the tensor is cut into blocks, one key each (name, shape, block size).
    rule
        The server-side update rule of every block.
    init
        The initialiser of every block.
    """

    layout: DenseLayout
    rule: UpdateRule
    init: ParamInit

    @property
    def block_len(self) -> int:
        return min(self.layout.block_size, self.layout.size)

    @property
    def spec(self) -> ParamSpec:
        return ParamSpec(self.layout.name, (self.block_len,), self.rule, self.init)

    @property
    def keys(self) -> list[bytes]:
        return self.layout.keys()

    def join(self, pulled: Mapping[bytes, np.ndarray], slot: int = 0) -> np.ndarray:
        """The tensor from pulled values (``(n_slots, block_len)`` per key): their slot
        ``slot``, the value by default, or a slot of the rule's state."""
        flat = np.concatenate([pulled[key][slot] for key in self.keys])
        return flat[: self.layout.size].reshape(self.layout.shape)

    def split(self, *tensors: np.ndarray) -> dict[bytes, np.ndarray]:
        """Per key, the blocks of ``tensors`` stacked ``(len(tensors), block_len)`` as one
        push delta (one tensor for a rule that takes one array per push)."""
        size = len(self.keys) * self.block_len
        slots = []
        for tensor in tensors:
            flat = np.zeros(size, dtype=tensor.dtype)
            flat[: self.layout.size] = tensor.reshape(-1)
            slots.append(flat.reshape(len(self.keys), self.block_len))
        return dict(zip(self.keys, np.stack(slots, axis=1), strict=True))
