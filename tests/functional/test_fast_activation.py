"""The speed-only variants of the activations (trainer.functional._fast.activation): the 1-bit
masks round-trip. (That each first-order backward equals its rule's formula is checked for
every rule in tests/test_rule_checks.py.)"""

import pytest
import torch

from trainer.functional._fast import activation as fast


@pytest.mark.parametrize("numel", [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 1001])
def test_bit_packing_round_trips(numel):
    gen = torch.Generator().manual_seed(numel)
    for shape in [(numel,), (1, numel, 1)]:
        mask = torch.rand(shape, generator=gen) > 0.5
        packed = fast.pack_bits(mask.clone())
        assert packed.dtype == torch.uint8 and packed.numel() == -(-numel // 8)
        unpacked = fast.unpack_bits(packed, mask.shape)
        assert unpacked.dtype == torch.uint8 and unpacked.shape == mask.shape
        assert torch.equal(unpacked.bool(), mask) and unpacked.max() <= 1
    all_true = fast.pack_bits(torch.ones(numel, dtype=torch.bool))
    assert all_true[:-1].eq(255).all()  # 8 bits a byte, element 0 in the top bit
    strided = (torch.rand(2 * numel, generator=gen) > 0.5)[::2]  # not contiguous
    unpacked = fast.unpack_bits(fast.pack_bits(strided.clone()), strided.shape)
    assert torch.equal(unpacked.bool(), strided)
