"""Network building blocks: attention equals torch's reference, masking semantics, ControlNet wiring, config."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from backend.models import MotionLCM, ModelConfig
from backend.models.config import StackConfig
from backend.models.transformer import (EncoderLayer, LearnedPositions, MultiheadAttention, SkipTransformer,
                                       attention_mask)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = MotionLCM(ModelConfig.tiny()).eval()
    with torch.no_grad():  # official zero-inits would hide wiring bugs: make every path non-trivial
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("cross", [False, True])
def test_attention_matches_torch_multihead_attention(cross):
    torch.manual_seed(1)
    ours = MultiheadAttention(32, 4, dropout=0.0).eval()
    ref = nn.MultiheadAttention(32, 4, dropout=0.0).eval()  # sequence-first, the official layout
    ref.load_state_dict(ours.state_dict())  # identical parameter names and shapes
    x, mem = torch.randn(3, 7, 32), torch.randn(3, 5, 32)
    keys = mem if cross else x
    visible = torch.ones(3, keys.shape[1], dtype=torch.bool)
    visible[1, -2:] = False
    visible[2, :3] = False
    got = ours(x, memory=mem if cross else None, mask=attention_mask(visible))
    want = ref(x.transpose(0, 1), keys.transpose(0, 1), keys.transpose(0, 1), key_padding_mask=~visible)[0]
    torch.testing.assert_close(got, want.transpose(0, 1), atol=1e-6, rtol=1e-5)


def test_vae_decoder_padding_is_exactly_zero_and_independent(tiny_model):
    torch.manual_seed(2)
    z = torch.randn(2, *tiny_model.config.latent_shape)
    mask = torch.arange(50)[None] < torch.tensor([[50], [31]])
    with torch.no_grad():
        feats = tiny_model.vae.decode(z, mask)
        alone = tiny_model.vae.decode(z[1:], mask[1:, :31])
    assert feats.shape == (2, 50, tiny_model.config.vae.nfeats)
    assert torch.all(feats[1, 31:] == 0) and torch.all(feats[1, :31] != 0)
    # Padded frames are invisible to the valid ones: decoding at the true length gives the same frames.
    torch.testing.assert_close(feats[1, :31], alone[0], atol=1e-5, rtol=1e-5)


def test_vae_encoder_ignores_padded_frames(tiny_model):
    torch.manual_seed(3)
    feats = torch.randn(1, 40, tiny_model.config.vae.nfeats)
    mask = torch.arange(40)[None] < 25
    noisy = feats.clone()
    noisy[:, 25:] = 100.0
    with torch.no_grad():
        _, d1 = tiny_model.vae.encode(feats, mask)
        _, d2 = tiny_model.vae.encode(noisy, mask)
        _, d3 = tiny_model.vae.encode(feats[:, :25], mask[:, :25])
    torch.testing.assert_close(d1.loc, d2.loc, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d1.loc, d3.loc, atol=1e-5, rtol=1e-5)
    assert d1.loc.shape == (1, *tiny_model.config.latent_shape)


def test_traj_encoder_sees_only_controlled_frames(tiny_model):
    torch.manual_seed(4)
    hint = torch.randn(1, 30, 22, 3)
    hint_mask = torch.zeros_like(hint)
    hint_mask[:, ::5, 0] = 1.0
    hint = hint * hint_mask
    changed = hint.clone()
    changed[:, 1::5, 3] = 5.0  # values on uncontrolled frames are hidden by the key-padding mask
    with torch.no_grad():
        a = tiny_model.traj_encoder(hint, hint_mask)
        b = tiny_model.traj_encoder(changed, hint_mask)
        c = tiny_model.traj_encoder(hint + 0.5 * hint_mask, hint_mask)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert (a - c).abs().max() > 1e-3
    assert a.shape == (1, *tiny_model.config.latent_shape)


def test_traj_encoder_skipping_hidden_frames_is_exact(tiny_model):
    """Eval mode drops uncontrolled frames before the transformer; compare with the full masked sequence."""
    torch.manual_seed(8)
    te = tiny_model.traj_encoder
    hint_mask = torch.zeros(3, 40, 22, 3)
    hint_mask[0, :, 0] = 1  # dense
    hint_mask[1, [3, 17, 39], 10] = 1  # three keyframes
    hint_mask[2, 5:9, 21] = 1
    hint = torch.randn(3, 40, 22, 3) * hint_mask
    frames = hint_mask.reshape(3, 40, -1).sum(-1) != 0
    with torch.no_grad():
        got = te(hint, hint_mask)
        tokens = te.global_motion_token.expand(3, -1, -1)
        x = te.query_pos_encoder(torch.cat([tokens, te.skel_embedding(hint.reshape(3, 40, -1))], dim=1))
        visible = torch.cat([torch.ones(3, tokens.shape[1], dtype=torch.bool), frames], dim=1)
        full, _ = te.encoder(x, mask=attention_mask(visible))
        want = te.latent_proj(full[:, : tokens.shape[1]])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layers", [1, 3])
def test_skip_transformer_keep_computes_the_leading_rows_exactly(layers):
    torch.manual_seed(9)
    stack = SkipTransformer(StackConfig(hidden_dim=32, ff_size=64, num_layers=layers, num_heads=4),
                            EncoderLayer, final_norm=True).eval()
    x = torch.randn(2, 12, 32)
    visible = torch.ones(2, 12, dtype=torch.bool)
    visible[1, 7:] = False
    with torch.no_grad():
        full, _ = stack(x, mask=attention_mask(visible))
        kept, _ = stack(x, mask=attention_mask(visible), keep=5)
    assert kept.shape == (2, 5, 32)
    torch.testing.assert_close(kept, full[:, :5], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="keep cannot be combined"):
        stack(x, keep=5, collect=True)


def test_controlnet_residuals_enter_every_layer(tiny_model):
    torch.manual_seed(5)
    cfg = tiny_model.config
    z, text = torch.randn(2, *cfg.latent_shape), torch.randn(2, 1, cfg.text_dim)
    w = torch.randn(2, cfg.denoiser.time_cond_proj_dim)
    with torch.no_grad():
        res = tiny_model.controlnet(z, 500, text, timestep_cond=w, controlnet_cond=torch.randn_like(z))
        assert len(res) == cfg.denoiser.num_layers
        assert res[0].shape == (2, cfg.latent_size + 2, cfg.denoiser.hidden_dim)
        plain = tiny_model.denoiser(z, 500, text, timestep_cond=w)
        zeros = tiny_model.denoiser(z, 500, text, timestep_cond=w, controlnet_residuals=[torch.zeros_like(r) for r in res])
        for i in range(len(res)):
            only_i = [r if j == i else torch.zeros_like(r) for j, r in enumerate(res)]
            out = tiny_model.denoiser(z, 500, text, timestep_cond=w, controlnet_residuals=only_i)
            assert (out - plain).abs().max() > 1e-4, f"residual {i} has no effect"
    torch.testing.assert_close(plain, zeros, atol=0, rtol=0)


def test_fresh_controlnet_is_zero_initialised():
    torch.manual_seed(6)
    model = MotionLCM(ModelConfig.tiny()).eval()
    cfg = model.config
    z, text = torch.randn(1, *cfg.latent_shape), torch.randn(1, 1, cfg.text_dim)
    with torch.no_grad():
        res = model.controlnet(z, 10, text, controlnet_cond=torch.randn_like(z))
    assert all(torch.count_nonzero(r) == 0 for r in res)
    assert torch.count_nonzero(model.denoiser.time_embedding.cond_proj.weight) == 0


def test_config_round_trip_and_validation():
    cfg = ModelConfig.tiny(text_dim=384)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig().with_text_dim(384).denoiser.text_dim == 384
    default = ModelConfig()
    assert (default.latent_shape, default.denoiser.hidden_dim, default.denoiser.num_layers) == ((16, 32), 256, 9)
    with pytest.raises(ValueError, match="odd"):
        StackConfig(num_layers=4).validate("vae")
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**cfg.to_dict(), "extra": 1})
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "vae": {**cfg.to_dict()["vae"], "bogus": 2}})


def test_training_gradients_reach_every_parameter():
    """The trainer back-propagates through VAE encode/decode and denoiser + ControlNet (dropout active)."""
    torch.manual_seed(7)
    model = MotionLCM(ModelConfig.tiny())
    with torch.no_grad():  # leave the zero-initialised layers non-zero so every path carries gradient
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.train()
    cfg = model.config
    feats, mask = torch.randn(2, 40, cfg.vae.nfeats), torch.arange(40)[None] < torch.tensor([[40], [33]])
    rec, z, dist = model.vae(feats, mask)
    hint_mask = torch.zeros(2, 40, 22, 3)
    hint_mask[:, ::2, 0] = 1
    cond = model.traj_encoder(torch.randn(2, 40, 22, 3) * hint_mask, hint_mask)
    t, text = torch.tensor([10, 900]), torch.randn(2, 1, cfg.text_dim)
    w = torch.randn(2, cfg.denoiser.time_cond_proj_dim)
    res = model.controlnet(z.detach(), t, text, timestep_cond=w, controlnet_cond=cond)
    eps = model.denoiser(z.detach(), t, text, timestep_cond=w, controlnet_residuals=res)
    loss = (rec - feats).pow(2).mean() + dist.scale.mean() + eps.pow(2).mean()
    loss.backward()
    # controlnet.latent_post exists in the official layout but is unused by design.
    no_grad = [n for n, p in model.named_parameters() if not n.startswith("controlnet.latent_post")
               and (p.grad is None or torch.count_nonzero(p.grad) == 0)]
    assert no_grad == [], no_grad


def test_positional_tables_start_smooth_and_distinct():
    """Training from scratch starts from sinusoids: every frame has its own code and neighbouring frames
    similar ones (the reference's uniform noise gives every frame an unrelated code)."""
    pe = LearnedPositions(196, 128).pe.detach()[:, 0]
    dist = torch.cdist(pe, pe)
    off_diagonal = dist + torch.eye(196) * 1e9
    assert float(off_diagonal.min()) > 0.1  # no two frames share a code
    neighbour, far = dist.diagonal(1).mean(), dist[torch.arange(0, 96), torch.arange(100, 196)].mean()
    assert neighbour < 0.25 * far
