"""backend.models.cpu_inference: packed linear weights and the CPU thread policy, against the plain path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.models import MotionLCM, cpu_inference
from backend.models.config import ModelConfig

pytestmark = pytest.mark.skipif(not cpu_inference.available(torch.device("cpu")),
                                reason="this torch build has no oneDNN (packed weights unavailable)")


@pytest.mark.parametrize("rows", [1, 8, 18, 196, 588])
def test_packed_linear_equals_the_plain_product(rows):
    torch.manual_seed(rows)
    layer = nn.Linear(256, 1024)
    x = torch.randn(1, rows, 256)
    packed = cpu_inference.PackedLinear(layer)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), layer(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cpu_inference.linear_gelu(packed, x), F.gelu(layer(x)), atol=1e-5, rtol=1e-5)
        assert cpu_inference.linear_gelu(layer, x).shape == (1, rows, 1024)  # an unpacked layer works too


def test_gradients_take_the_plain_path_with_the_same_weights():
    """Latent tuning backpropagates through packed layers to their input."""
    torch.manual_seed(0)
    layer = nn.Linear(32, 16)
    packed = cpu_inference.PackedLinear(layer)
    x = torch.randn(4, 32, requires_grad=True)
    packed(x, gelu=True).sum().backward()
    expected = torch.autograd.grad(F.gelu(layer(x)).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected)


def test_packing_keeps_the_state_dict_and_the_outputs():
    torch.manual_seed(0)
    model = MotionLCM(ModelConfig.tiny()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    z = torch.randn(2, *model.config.latent_shape)
    mask = torch.arange(60)[None, :] < torch.tensor([[40], [60]])  # two lengths: padding masked in attention
    with torch.inference_mode():
        plain = model.vae.decode(z, mask)
    count = cpu_inference.pack_linear_weights(model)
    assert count > 0 and any(isinstance(m, cpu_inference.PackedLinear) for m in model.modules())
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    with torch.inference_mode():
        torch.testing.assert_close(model.vae.decode(z, mask), plain, atol=1e-5, rtol=1e-5)


def test_narrow_threads_widens_only_large_operations_and_restores():
    threads = torch.get_num_threads()
    if threads == 1:
        pytest.skip("one thread: nothing to narrow")
    with cpu_inference.narrow_threads():
        assert torch.get_num_threads() == 1
        assert cpu_inference.run_wide(cpu_inference.WIDE_ROWS, torch.get_num_threads) == threads
        assert cpu_inference.run_wide(cpu_inference.WIDE_ROWS - 1, torch.get_num_threads) == 1
        with cpu_inference.narrow_threads():  # nested: the outer policy stays
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads
    assert cpu_inference.run_wide(10_000, torch.get_num_threads) == threads  # no policy outside the block
    with pytest.raises(RuntimeError), cpu_inference.narrow_threads():
        raise RuntimeError("a failing generation")
    assert torch.get_num_threads() == threads


def test_the_optimised_pipeline_matches_the_plain_one():
    """The shipped model, one-step controlled generation: optimised and plain CPU paths agree to 1e-4 m."""
    from backend.generation.controls import JointControl
    from backend.generation.pipeline import DEFAULT_CHECKPOINT, MotionLCMPipeline

    if not (DEFAULT_CHECKPOINT / "config.json").is_file():
        pytest.skip("no shipped model")
    frames = 80
    path = np.stack([np.linspace(0, 2, frames), np.full(frames, 0.9), np.zeros(frames)], axis=1).astype(np.float32)
    kwargs = dict(controls=[[JointControl.dense("pelvis", path)]], seed=3, variations=2, fit=False)
    results = [MotionLCMPipeline.from_checkpoint(optimise_cpu=flag).generate(["a person walks"], [frames], **kwargs)
               for flag in (False, True)]
    np.testing.assert_allclose(results[1].joints, results[0].joints, atol=1e-4)
    assert results[1].settings == results[0].settings
