"""NetConfig: the few choices that shape the networks. Everything else is fixed in code."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Tuple

from nets.budget import CapacityBudget

FAMILIES = ("auto", "mlp", "conv")
LATENT_NORMS = ("minmax", "layernorm")
PRECISIONS = ("float32", "bfloat16", "float16", "auto")


@dataclass
class NetConfig:
    family: str = "auto"  # "mlp" (vector obs), "conv" (image obs [C, H, W]) or "auto" (from obs rank)
    latent_dim: int = 64  # MLP latent width
    hidden: Tuple[int, ...] = (64,)  # MLP hidden widths inside each network
    conv_channels: int = 64  # channels of the conv latent (EfficientZero: 64 at 6x6)
    conv_blocks: int = 1  # residual blocks in each conv network
    conv_downsample: bool = True  # EfficientZero's /16 downsampling (96x96 -> 6x6); off for tiny images
    value_support_size: int = 20  # value bins -S..S over h(x); 20 covers |returns| up to ~420
    reward_support_size: int = 10  # reward bins; 10 covers |reward| up to ~117
    # Spacing of the value and reward bins in h(x)-space: bins at step * (-S..S). 1 is MuZero's
    # integers, made for returns in the tens and hundreds; a task whose returns stay within 1 (a
    # goal paid once) has every value between the bins 0 and 1 (h(1) = 0.41), where a small error
    # in the two-hot mixture is a few % of the value (README, "Value resolution"). Smaller steps resolve
    # small returns finely and cover h <= step * S.
    support_step: float = 1.0
    # Per-sample latent normalization: LayerNorm without affine parameters (default), or
    # EfficientZero's min-max to [0, 1], which passes gradient to the latent's scale only through
    # its min and max entries; LayerNorm fitted the dynamics better (README, "Choices measured").
    # NetConfig.atari() keeps EfficientZero's min-max.
    latent_norm: str = "layernorm"
    # Grid observations [W, H, C] of small integers (MiniGrid: (11, 6, 4), set by its presets): entry
    # c is how many values channel c takes. Set, the networks read the grid one-hot and the decoder
    # predicts each channel as a categorical (nets/grid.py). None: observations are read as numbers.
    grid_values: Optional[Tuple[int, ...]] = None
    # The observation decoder, decode(latent) -> predicted observation, which objectives over
    # observations read. None (the default) and true: on (for pixel images, a small downsampled
    # frame: nets/conv.py FrameDecoder); false: off.
    use_decoder: Optional[bool] = None
    # Whether the reconstruction loss shapes the latents (True, "joint") or the decoder only reads
    # them (False, a probe; the default). As a probe it cannot change what the other networks
    # learn, so having it on costs the training task nothing: the core networks' weights are
    # identical with and without it (tests/test_agent_ez.py). Joint training was measured to slow
    # CartPole down (README, "Choices measured").
    decoder_joint: bool = False
    # How the networks read vector observations: "none" (as they are) or "bounds": each entry
    # rescaled to [-1, 1] from the observation space's finite bounds, as the representation's input
    # and as the decoder's target alike (decode() still returns the environment's units), so an
    # entry of small range (MountainCar's velocity, +-0.07) weighs as much as the others. The mlp
    # family without grid_values.
    obs_scale: str = "none"
    num_value_heads: int = 1  # >1: an ensemble of independent value heads (pessimistic objectives)
    # A continuation head in the prediction network: a terminal logit per state, so the search can
    # stop at predicted episode ends (nets/model.py). Off until it is measured on CartPole.
    terminal_head: bool = False
    # EfficientZero's value-prefix LSTM in place of the per-step reward head (recurrent: the budget
    # refuses it unless budget.allow_recurrence). See nets/model.py for how its state is carried.
    value_prefix_lstm: bool = False
    lstm_hidden: int = 64
    # The LSTM's state is reset every this many transitions, in the learner's unroll and in the
    # search alike, so a tree deeper than the unroll never runs it past what it was trained on
    # (EfficientZero's lstm_horizon_len).
    value_prefix_horizon: int = 5
    projection_hidden: int = 64  # SimSiam consistency projection (EfficientZero Atari: 1024)
    projection_dim: int = 64  # (1024)
    projection_head_hidden: int = 32  # its prediction head's hidden width (512)
    # The torch forward's arithmetic. "float32" (the default); "bfloat16" or "float16": mixed
    # precision (torch.autocast: convolutions and matrix products in 16 bits, parameters, losses and
    # every output the search or an objective reads in float32; float16 adds the learner's gradient
    # scaler); "auto": bfloat16 on a CUDA device of compute capability >= 8, float16 on older ones,
    # float32 elsewhere (NetConfig.atari() uses it). A 16-bit forward never takes the compiled CPU path
    # (planners/fused.py), so that the search evaluates the very function the learner trains.
    precision: str = "float32"
    budget: CapacityBudget = field(default_factory=CapacityBudget)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"NetConfig.family must be one of {FAMILIES}, got {self.family!r}")
        if self.latent_norm not in LATENT_NORMS:
            raise ValueError(f"NetConfig.latent_norm must be one of {LATENT_NORMS}, got {self.latent_norm!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"NetConfig.precision must be one of {PRECISIONS}, got {self.precision!r} "
                             f"(e.g. --set net.precision=bfloat16)")
        if self.value_prefix_horizon < 1:
            raise ValueError(f"NetConfig.value_prefix_horizon must be >= 1, got {self.value_prefix_horizon}")
        if self.obs_scale not in ("none", "bounds"):
            raise ValueError(f"NetConfig.obs_scale must be 'none' or 'bounds', got {self.obs_scale!r}")
        if self.use_decoder not in (None, True, False):
            raise ValueError(f"NetConfig.use_decoder must be true, false or null (auto), got {self.use_decoder!r}")
        if self.num_value_heads < 1:
            raise ValueError(f"NetConfig.num_value_heads must be >= 1, got {self.num_value_heads}")
        if min(self.value_support_size, self.reward_support_size) < 1:
            raise ValueError("NetConfig value_support_size and reward_support_size must be >= 1")
        self.support_step = float(self.support_step)
        if not self.support_step > 0:
            raise ValueError(f"NetConfig.support_step must be > 0, got {self.support_step}")
        self.hidden = tuple(int(h) for h in self.hidden)  # lists arrive from YAML / JSON
        if self.grid_values is not None:
            self.grid_values = tuple(int(v) for v in self.grid_values)
            if not self.grid_values or min(self.grid_values) < 2:
                raise ValueError(f"NetConfig.grid_values must list >= 2 values per channel, got {list(self.grid_values)}")
        if isinstance(self.budget, dict):
            self.budget = CapacityBudget(**self.budget)

    @classmethod
    def atari(cls, **overrides) -> "NetConfig":
        """EfficientZero's Atari networks (6x6x64 latent, 601-bin supports, 1024-wide projection),
        with a budget that admits exactly that size class, in mixed precision on a GPU (as
        EfficientZero trains them)."""
        settings = dict(family="conv", latent_norm="minmax", conv_channels=64, conv_blocks=1, value_support_size=300,
                        reward_support_size=300, projection_hidden=1024, projection_dim=1024,
                        projection_head_hidden=512, precision="auto",
                        budget=CapacityBudget(max_network_params=1_000_000, max_core_params=2_000_000,
                                              max_projection_params=5_000_000))
        settings.update(overrides)
        return cls(**settings)

    def to_dict(self) -> dict:
        """Plain types only (for YAML / checkpoints); `NetConfig(**d)` reads it back."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        if self.grid_values is not None:
            d["grid_values"] = list(self.grid_values)
        return d

    def resolve_family(self, obs_shape: Tuple[int, ...]) -> str:
        if self.family != "auto":
            return self.family
        # A grid is an image too: "auto" gives it the conv family; the MiniGrid presets name one.
        return "conv" if len(obs_shape) == 3 else "mlp"
