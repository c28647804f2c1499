"""Pixel images get a decoder of a small downsampled frame (nets/conv.py FrameDecoder), so
objectives over predicted observations work on image agents too."""
import numpy as np
import pytest
import torch

from nets.config import NetConfig
from nets.model import build_model
from planners.config import SearchConfig
from planners.objectives import ObservationReward, ObservationValue
from planners.plugins import validate
from planners.policies import plan

SMALL = dict(family="conv", conv_channels=16, conv_blocks=1, projection_hidden=32, projection_dim=32,
             projection_head_hidden=16)


def test_pixel_images_get_a_quarter_resolution_frame_decoder_by_default():
    model = build_model((4, 96, 96), 6, NetConfig.atari(), "cpu")
    out = model.initial_inference(torch.zeros(2, 4, 96, 96, dtype=torch.uint8))
    assert model.decode(out.latent).shape == (2, 4, 24, 24)  # [stack, 96/4, 96/4], scaled by 1/255
    assert sum(p.numel() for p in model.decoder.parameters()) < 20_000
    off = build_model((3, 32, 32), 4, NetConfig(**SMALL, use_decoder=False), "cpu")
    with pytest.raises(ValueError, match="net.use_decoder=true"):
        validate(ObservationValue(lambda frames: frames.mean((1, 2, 3))), off, (3, 32, 32))


def squares(n: int, rng) -> np.ndarray:
    """uint8 images [n, 3, 32, 32], black with one white 8 x 8 square on a 4 x 4 grid of places."""
    images = np.zeros((n, 3, 32, 32), np.uint8)
    for i, place in enumerate(rng.integers(16, size=n)):
        r, c = 8 * (place // 4), 8 * (place % 4)
        images[i, :, r:r + 8, c:c + 8] = 255
    return images


def test_the_frame_decoder_learns_where_things_are():
    """Fitted with the representation on the reconstruction loss, the decoded 8 x 8 frame puts the
    square where it is: its error falls below a fifth of the best constant frame's."""
    torch.manual_seed(0)
    model = build_model((3, 32, 32), 4, NetConfig(**SMALL), "cpu")
    images = torch.as_tensor(squares(64, np.random.default_rng(0)))
    params = list(model.representation.parameters()) + list(model.decoder.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    for _ in range(300):
        loss = model.reconstruction_loss(model.representation(images), images).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    target = model.decoder.target(images)
    constant = (target - target.mean(0, keepdim=True)).pow(2).mean()
    with torch.no_grad():
        fitted = model.reconstruction_loss(model.representation(images), images).mean()
    assert fitted < 0.2 * constant, (float(fitted), float(constant))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_search_maximizes_a_reward_over_predicted_frames(sign):
    """With a one-step horizon, a uniform prior and simulations to spare, the search acts on the
    action whose predicted frame the reward ranks highest (both signs: so not by a tie's lowest action)."""
    torch.manual_seed(0)
    model = build_model((3, 32, 32), 4, NetConfig(**SMALL), "cpu")
    obs = squares(3, np.random.default_rng(1))

    def left_brightness(frames):
        return sign * frames[:, :, :, :4].mean(dim=(1, 2, 3)) * 100.0

    objective = ObservationReward(left_brightness, horizon=1)
    validate(objective, model, (3, 32, 32))
    out = plan(model, objective, obs, SearchConfig(num_simulations=64, prior="uniform"),
               rng=np.random.default_rng(0), add_noise=False, deterministic=True)
    with torch.no_grad():
        root = model.initial_inference(obs)
        scores = torch.stack([left_brightness(model.decode(model.recurrent_inference(
            root.latent, torch.full((3,), a, dtype=torch.long)).latent)) for a in range(4)], dim=1)
    np.testing.assert_array_equal(out.action, scores.argmax(dim=1).numpy())


def test_the_decoded_frame_is_never_larger_than_the_image():
    model = build_model((3, 4, 4), 4, NetConfig(**SMALL, conv_downsample=False), "cpu")  # latent [16, 4, 4]
    out = model.initial_inference(torch.zeros(2, 3, 4, 4))
    assert model.decode(out.latent).shape == (2, 3, 4, 4)
    assert model.reconstruction_loss(out.latent, torch.zeros(2, 3, 4, 4)).shape == (2,)
