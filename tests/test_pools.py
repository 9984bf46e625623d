"""Specification of the fake-sample pool used for discriminator training."""

import pytest
import torch

from poseaug_pl.training.pools import FakePool


def test_filling_pool_stores_and_returns_every_sample():
    pool = FakePool(10, (2,))
    x = torch.arange(12.0).view(6, 2)
    torch.testing.assert_close(pool.query(x), x)
    assert int(pool.count) == 6
    torch.testing.assert_close(pool.items[:6], x)


def test_full_pool_swaps_about_half_and_keeps_what_it_returns_out():
    torch.manual_seed(0)
    pool = FakePool(64, (3,))
    pool.query(torch.zeros(64, 3))  # full of zeros
    new = torch.ones(64, 3)
    out = pool.query(new)
    from_pool = (out == 0).all(1)
    assert 16 < int(from_pool.sum()) < 48  # swap probability 0.5
    assert int((pool.items == 1).all(1).sum()) == int(from_pool.sum())  # each swap stored one
    assert int(pool.count) == 64


def test_pool_is_deterministic_given_the_seed():
    def run():
        torch.manual_seed(3)
        pool = FakePool(32, (2,))
        outs = [pool.query(torch.randn(16, 2)) for _ in range(6)]
        return torch.cat(outs), pool.items.clone()

    (a, pa), (b, pb) = run(), run()
    assert torch.equal(a, b) and torch.equal(pa, pb)


def test_batch_larger_than_pool_is_refused():
    with pytest.raises(ValueError, match="exceeds the pool size"):
        FakePool(4, (2,)).query(torch.zeros(5, 2))
