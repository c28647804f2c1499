"""Conv family (image observations [C, H, W]): EfficientZero's small residual networks.

Shapes follow EfficientZero on Atari: a stacked observation [C*stack, 96, 96] is downsampled by 16
to a [64, 6, 6] latent; the action enters dynamics as one extra plane filled with a / A.
Deviation: GroupNorm instead of BatchNorm, so outputs do not depend on batch composition or on
train/eval mode (the search batches unrelated trees together).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nets.config import NetConfig
from nets.mlp import LatentNorm, RewardHead, ValueHeads, mlp

# EfficientZero's head sizes: 1x1 convs reduce to 16 channels, then one hidden layer of 32.
REDUCED_CHANNELS = 16
HEAD_HIDDEN = 32
DOWNSAMPLE_STEPS = 4  # four stride-2 stages: 96 -> 48 -> 24 -> 12 -> 6


def downsampled_size(n: int) -> int:
    """Side length after the downsampling stack (each stage maps n to ceil(n / 2))."""
    for _ in range(DOWNSAMPLE_STEPS):
        n = (n + 1) // 2
    return n


def norm2d(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=8 if channels % 8 == 0 else 1, num_channels=channels)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1, self.norm1 = conv3x3(in_channels, out_channels, stride), norm2d(out_channels)
        self.conv2, self.norm2 = conv3x3(out_channels, out_channels), norm2d(out_channels)
        # The skip path needs a projection only where the block changes shape.
        self.shortcut = (conv3x3(in_channels, out_channels, stride)
                         if stride != 1 or in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class DownSample(nn.Module):
    """EfficientZero's stem: conv s2, res, res s2, res, avgpool s2, res, avgpool s2.

    Runs channels-last (weights and activations): on the CPU oneDNN's convolutions over full
    frames are faster in that layout (README, "Atari"), and it is the layout PyTorch advises for
    convolutions under a GPU's autocast (not measured here). The 6x6 latent leaves in the default
    layout, as everything after the stem reads it.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        self.net = nn.Sequential(
            conv3x3(in_channels, mid, stride=2), norm2d(mid), nn.ReLU(),
            ResidualBlock(mid, mid),
            ResidualBlock(mid, out_channels, stride=2),
            ResidualBlock(out_channels, out_channels),
            nn.AvgPool2d(3, stride=2, padding=1),
            ResidualBlock(out_channels, out_channels),
            nn.AvgPool2d(3, stride=2, padding=1))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last)).contiguous()


def latent_spatial_shape(obs_shape: Tuple[int, ...], config: NetConfig) -> Tuple[int, int]:
    _, h, w = obs_shape
    return (downsampled_size(h), downsampled_size(w)) if config.conv_downsample else (h, w)


class ConvRepresentation(nn.Module):
    def __init__(self, obs_shape: Tuple[int, ...], config: NetConfig):
        super().__init__()
        in_channels, channels = obs_shape[0], config.conv_channels
        stem = (DownSample(in_channels, channels) if config.conv_downsample
                else nn.Sequential(conv3x3(in_channels, channels), norm2d(channels), nn.ReLU()))
        self.net = nn.Sequential(stem, *[ResidualBlock(channels, channels) for _ in range(config.conv_blocks)])
        self.norm = LatentNorm(config.latent_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # Raw Atari frames arrive as uint8 pixels; floats are taken as already scaled.
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
        return self.norm(self.net(x))


class ConvDynamics(nn.Module):
    """(latent, action plane a/A) -> next latent, plus reward logits for that transition."""

    def __init__(self, num_actions: int, spatial: Tuple[int, int], config: NetConfig):
        super().__init__()
        channels = config.conv_channels
        self.num_actions = num_actions
        self.conv, self.conv_norm = conv3x3(channels + 1, channels), norm2d(channels)
        self.blocks = nn.Sequential(*[ResidualBlock(channels, channels) for _ in range(config.conv_blocks)])
        self.norm = LatentNorm(config.latent_norm)
        self.reward_reduce = nn.Sequential(nn.Conv2d(channels, REDUCED_CHANNELS, 1), norm2d(REDUCED_CHANNELS),
                                           nn.ReLU(), nn.Flatten())
        self.reward = RewardHead(REDUCED_CHANNELS * spatial[0] * spatial[1], HEAD_HIDDEN,
                                 config.reward_support_size,
                                 config.lstm_hidden if config.value_prefix_lstm else None)

    def forward(self, latent: torch.Tensor, action: torch.Tensor, reward_state: Optional[torch.Tensor]):
        plane = (action.to(latent.dtype) / self.num_actions).view(-1, 1, 1, 1).expand(
            -1, 1, *latent.shape[2:])
        x = self.conv_norm(self.conv(torch.cat([latent, plane], dim=1)))
        # The residual keeps the transition close to identity at initialization.
        next_latent = self.norm(self.blocks(F.relu(x + latent)))
        reward_logits, reward_state = self.reward(self.reward_reduce(next_latent), reward_state)
        return next_latent, reward_logits, reward_state


class ConvPrediction(nn.Module):
    """latent -> (policy logits [B, A], value logits [B, E, S], terminal logits [B] or None);
    the terminal head (NetConfig.terminal_head) has its own reduction, like the policy's."""

    def __init__(self, num_actions: int, spatial: Tuple[int, int], config: NetConfig):
        super().__init__()
        channels = config.conv_channels
        flat = REDUCED_CHANNELS * spatial[0] * spatial[1]
        self.block = ResidualBlock(channels, channels)

        def reduce():
            return nn.Sequential(nn.Conv2d(channels, REDUCED_CHANNELS, 1), norm2d(REDUCED_CHANNELS),
                                 nn.ReLU(), nn.Flatten())

        self.policy = nn.Sequential(reduce(), mlp(flat, (HEAD_HIDDEN,), num_actions))
        self.value_reduce = reduce()
        self.value = ValueHeads(flat, HEAD_HIDDEN, config.value_support_size, config.num_value_heads)
        self.terminal = (nn.Sequential(reduce(), mlp(flat, (HEAD_HIDDEN,), 1)) if config.terminal_head
                         else None)

    def forward(self, latent: torch.Tensor):
        x = self.block(latent)
        terminal = self.terminal(x).squeeze(-1) if self.terminal is not None else None
        return self.policy(x), self.value(self.value_reduce(x)), terminal


class FrameDecoder(nn.Module):
    """latent [C, h, w] -> the observation at 4h x 4w (Atari: [stack, 24, 24] for 96 x 96 frames),
    scaled as the representation reads it (uint8 pixels / 255).

    A small downsampled frame, not the full image: objectives over predicted frames ask where
    things are (the paddle, the ball, a region's brightness), which a quarter of the resolution
    keeps, and a full 96 x 96 decoder would outweigh the networks it reads. Two stride-2 transposed
    convolutions after a 1x1 reduction, about 12k parameters at 64 latent channels and 4 frames.
    """

    UPSCALE = 4
    HIDDEN = (32, 16)

    def __init__(self, obs_shape: Tuple[int, ...], latent_shape: Tuple[int, int, int]):
        super().__init__()
        self.obs_channels = int(obs_shape[0])
        channels, h, w = latent_shape
        # A quarter of a downsampled image's resolution; never larger than the image itself.
        self.frame_size = (min(self.UPSCALE * h, int(obs_shape[1])), min(self.UPSCALE * w, int(obs_shape[2])))
        a, b = self.HIDDEN
        self.net = nn.Sequential(
            nn.Conv2d(channels, a, 1), nn.ReLU(),
            nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(b, self.obs_channels, 4, stride=2, padding=1))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        frame = self.net(latent)
        return frame if tuple(frame.shape[-2:]) == self.frame_size else F.adaptive_avg_pool2d(frame, self.frame_size)

    def target(self, obs: torch.Tensor) -> torch.Tensor:
        """The observation as this decoder predicts it: scaled, area-averaged to the frame size."""
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
        return F.adaptive_avg_pool2d(x, self.frame_size)

    def loss(self, latent: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Per sample [B]: mean squared error against the downsampled observation."""
        return (self(latent) - self.target(obs)).pow(2).flatten(1).mean(dim=1)
