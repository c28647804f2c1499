"""The Model: representation h, dynamics g, prediction f, consistency projection, optional decoder.

    initial_inference(obs)              = f(h(obs)),            reward 0
    recurrent_inference(latent, action) = f(g(latent, action)), reward of that transition

Both return a `ModelOutput` of tensors on the model's device, with reward and value decoded to
scalars and their logits kept for the losses. Every output is float32, also where the networks run
in mixed precision (NetConfig.precision: `Model.autocast`).

Terminal head (NetConfig.terminal_head, off by default): f also predicts whether a state is
absorbing (an episode's end, or past it). `ModelOutput.terminal` is then the flag (probability >
0.5) the search stops at, and `terminal_logit` what the learner's binary cross-entropy trains. Only
`recurrent_inference` sets the flag: the head predicts where a transition leads, and the state
`initial_inference` sees is a real observation the environment has not ended (a false "terminal"
there would stop the search from expanding anything).

Value-prefix LSTM (NetConfig.value_prefix_lstm, off by default; the budget refuses it unless
budget.allow_recurrence): EfficientZero predicts the *value prefix* (sum of rewards since a reset)
with an LSTM that runs along an unroll. Its state travels explicitly: every output carries
`reward_state`, to be passed to the next `recurrent_inference` from that node; passing None means
"reset" (the learner and the search reset it every `value_prefix_horizon` transitions: at each
unroll start and each root - the root's `initial_inference` output holds the zero state - and every
horizon steps below them). Then `reward_logits` are value-prefix logits (the
learner's targets are cumulative sums of rewards since the reset), while `reward` stays the
per-step reward (this prefix minus the parent's), so objectives and the search need no change
beyond storing `reward_state` per node.
"""
from __future__ import annotations

import contextlib
import math
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from nets.budget import CapacityRow, capacity_rows, check_budget
from nets.config import NetConfig
from nets.grid import GridDecoder, GridOneHot, check_grid_shape, encoded_shape
from nets.conv import ConvDynamics, ConvPrediction, ConvRepresentation, FrameDecoder, latent_spatial_shape
from nets.mlp import ConsistencyProjection, MLPDecoder, MLPDynamics, MLPPrediction, MLPRepresentation
from nets.output import ModelOutput
from nets.support import support_to_scalar

ArrayLike = "np.ndarray | torch.Tensor"


class NonFiniteObservation(ValueError):
    """An observation handed to the model holds NaN or inf: the input is at fault, not the network."""


def available_devices() -> List[str]:
    """The --device values this machine can honour."""
    found = ["auto", "cpu"]
    if torch.cuda.is_available():
        found += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def resolve_device(device: "str | torch.device", flag: str = "--device") -> torch.device:
    """"auto" picks CUDA when there is one, else the CPU. A device this machine lacks is refused
    here with a ValueError naming `flag` and the devices there are, before anything is built on it
    (torch would fail later with an AssertionError, and SB3 would quietly fall back to the CPU)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{flag} {device!r} is not a torch device ({e}); available here: "
                         f"{', '.join(available_devices())}") from e
    missing = None
    if dev.type == "cuda" and not torch.cuda.is_available():
        missing = ("CUDA is not available (this torch build has no CUDA support)" if torch.version.cuda is None
                   else "CUDA is not available (no GPU visible to torch)")
    elif dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        missing = f"there are {torch.cuda.device_count()} CUDA devices"
    elif dev.type == "mps" and "mps" not in available_devices():
        missing = "MPS is not available"
    if missing:
        raise ValueError(f"{flag} {device}: {missing}; available here: {', '.join(available_devices())}")
    return dev


def compute_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The 16-bit type autocast computes in for NetConfig.precision on `device`; None: float32."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        # bfloat16 in hardware from compute capability 8 (Ampere); torch would also report the
        # emulated, slow bfloat16 of older GPUs (V100, T4) as supported.
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[precision]


class ObservationScale(nn.Module):
    """obs -> (obs - center) / half_width per entry, [-1, 1] within the bounds (NetConfig.obs_scale);
    `restore` maps back. Buffers, not parameters: saved with the model, never trained."""

    def __init__(self, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.register_buffer("center", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))
        self.register_buffer("half_width", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs.float() - self.center) / self.half_width

    def restore(self, scaled: torch.Tensor) -> torch.Tensor:
        return scaled * self.half_width + self.center


def finite_bounds(bounds, obs_shape: Tuple[int, ...]) -> Tuple[np.ndarray, np.ndarray]:
    """(low, high) of the observation space, broadcast to `obs_shape`, checked finite and ordered."""
    if bounds is None:
        raise ValueError("net.obs_scale=bounds needs the observation space's bounds: pass obs_bounds=(low, high) "
                         "to build_model (EZAgent passes its environment's)")
    low, high = (np.broadcast_to(np.asarray(b, np.float64), obs_shape) for b in bounds)
    bad = ~(np.isfinite(low) & np.isfinite(high) & (high > low))
    if bad.any():
        raise ValueError(f"net.obs_scale=bounds needs finite bounds with high > low for every observation entry; "
                         f"entries {np.flatnonzero(bad.reshape(-1)).tolist()} have low {low[bad].tolist()}, high "
                         f"{high[bad].tolist()}: set net.obs_scale=none (or wrap the env to bound them)")
    return low, high


class Model(nn.Module):
    def __init__(self, obs_shape: Tuple[int, ...], num_actions: int, config: NetConfig, obs_bounds=None):
        """obs_bounds: (low, high) of the observation space, read when config.obs_scale is 'bounds'."""
        super().__init__()
        self.check_outputs = True  # every inference call checks its outputs (unchecked_outputs)
        self._resolved_dtype = None  # (device, compute_dtype) of the last call (compute_dtype)
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.num_actions = int(num_actions)
        self.config = config
        self.family = config.resolve_family(self.obs_shape)
        grid = config.grid_values
        if grid is not None:
            check_grid_shape(self.obs_shape, grid)
        # What the representation reads: the observation, or its one-hot grid (nets/grid.py).
        net_shape = encoded_shape(self.obs_shape, grid, self.family) if grid is not None else self.obs_shape
        if self.family == "conv":
            if len(net_shape) != 3:
                raise ValueError(f"the conv family needs image observations [C, H, W], got shape {self.obs_shape}")
            spatial = latent_spatial_shape(net_shape, config)
            self.latent_shape = (config.conv_channels, *spatial)
            self.representation = ConvRepresentation(net_shape, config)
            self.dynamics = ConvDynamics(self.num_actions, spatial, config)
            self.prediction = ConvPrediction(self.num_actions, spatial, config)
            # Pixel images: a small downsampled frame (FrameDecoder), a probe like the others.
            decoder = (lambda obs_shape, _: FrameDecoder(obs_shape, self.latent_shape)) \
                if config.use_decoder is not False else None
        else:
            self.latent_shape = (config.latent_dim,)
            self.representation = MLPRepresentation(net_shape, config)
            self.dynamics = MLPDynamics(self.num_actions, config)
            self.prediction = MLPPrediction(self.num_actions, config)
            decoder = MLPDecoder if config.use_decoder is not False else None
        if grid is not None:
            # Parameter-free, so the core networks' weights are the same as without it.
            self.representation = nn.Sequential(GridOneHot(grid, channels_first=self.family == "conv"),
                                                self.representation)
            decoder = self._grid_decoder if config.use_decoder is not False else None
        self.obs_scale: Optional[ObservationScale] = None
        if config.obs_scale == "bounds":
            if self.family != "mlp" or grid is not None:
                raise ValueError(f"net.obs_scale=bounds rescales vector observations (the mlp family without "
                                 f"net.grid_values); this network is {self.family} over {self.obs_shape}: "
                                 f"set net.obs_scale=none")
            # Parameter-free too; the compiled search then runs this representation in torch.
            self.obs_scale = ObservationScale(*finite_bounds(obs_bounds, self.obs_shape))
            self.representation = nn.Sequential(self.obs_scale, self.representation)
        self.projection = ConsistencyProjection(math.prod(self.latent_shape), config.projection_hidden,
                                                config.projection_dim, config.projection_head_hidden)
        # Built last, so that the other networks' initial weights do not depend on it.
        self.decoder = decoder(self.obs_shape, config) if decoder is not None else None
        check_budget(self.capacity_report(), config.budget)

    def _grid_decoder(self, obs_shape, config: NetConfig) -> GridDecoder:
        return GridDecoder(obs_shape, math.prod(self.latent_shape), tuple(reversed(config.hidden)), config.grid_values)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def compute_dtype(self) -> Optional[torch.dtype]:
        """What the forward computes in under `autocast` (None: float32); see NetConfig.precision."""
        if self.config.precision == "float32":
            return None
        device = self.device
        if self._resolved_dtype is None or self._resolved_dtype[0] != device:  # once per device
            self._resolved_dtype = (device, compute_dtype(self.config.precision, device))
        return self._resolved_dtype[1]

    def autocast(self):
        """The context the networks run in: autocast to `compute_dtype`, or nothing for float32."""
        dtype = self.compute_dtype
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    @property
    def value_prefix_horizon(self) -> Optional[int]:
        """Transitions between resets of the value-prefix LSTM's state; None without the LSTM."""
        return self.config.value_prefix_horizon if self.config.value_prefix_lstm else None

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    @property
    def decodes_whole_observation(self) -> bool:
        """Whether decode(latent) has the observation's own shape (not a downsampled frame)."""
        return self.decoder is not None and not isinstance(self.decoder, FrameDecoder)

    def capacity_report(self) -> List[CapacityRow]:
        """One row per network: parameters, depth, stateful. See `format_capacity_report`."""
        networks = {"representation": self.representation, "dynamics": self.dynamics,
                    "prediction": self.prediction, "projection": self.projection}
        if self.decoder is not None:
            networks["decoder"] = self.decoder
        return capacity_rows(networks)

    # ----------------------------------------------------------------- inference

    def initial_inference(self, obs: ArrayLike) -> ModelOutput:
        """obs [B, *obs_shape] (numpy or tensor, any device) -> root outputs; reward is 0.

        Raises NonFiniteObservation (a ValueError naming the rows) if obs holds NaN or inf, and
        FloatingPointError if the network's outputs do from a finite obs (divergence)."""
        obs = torch.as_tensor(obs, device=self.device)
        if tuple(obs.shape[1:]) != self.obs_shape or obs.dim() != len(self.obs_shape) + 1:
            raise ValueError(f"initial_inference expects a batch of observations [B, {', '.join(map(str, self.obs_shape))}], "
                             f"got shape {tuple(obs.shape)}")
        # Checked with the outputs' finiteness in one host sync (_predict), so a NaN observation is
        # reported as such rather than as a diverged network.
        obs_finite = torch.isfinite(obs).flatten(1).all(dim=1) if self.check_outputs else None
        with self.autocast():
            latent = self.representation(obs)
        latent = latent.float()  # a no-op in float32
        batch = latent.shape[0]
        reward_state = None
        if self.dynamics.reward.state_size:
            reward_state = latent.new_zeros(batch, self.dynamics.reward.state_size + 1)
        return self._predict(latent, latent.new_zeros(batch), None, reward_state, "initial_inference",
                             obs=obs, obs_finite=obs_finite, predicted=False)

    def recurrent_inference(self, latent: torch.Tensor, action: ArrayLike,
                            reward_state: Optional[torch.Tensor] = None) -> ModelOutput:
        """(latent [B, *latent_shape], action [B] ints) -> outputs at the next latent.

        `reward_state` matters only with the value-prefix LSTM (see the module docstring).
        """
        action = torch.as_tensor(action, device=self.device).long().reshape(-1)
        if action.shape[0] != latent.shape[0]:
            raise ValueError(f"recurrent_inference got {latent.shape[0]} latents but {action.shape[0]} actions")
        lstm_state, parent_prefix = None, None
        if reward_state is not None and self.dynamics.reward.state_size:
            lstm_state, parent_prefix = reward_state[:, :-1], reward_state[:, -1]
        with self.autocast():
            next_latent, reward_logits, lstm_state = self.dynamics(latent, action, lstm_state)
        next_latent, reward_logits = next_latent.float(), reward_logits.float()
        if lstm_state is not None:
            lstm_state = lstm_state.float()
        reward = support_to_scalar(reward_logits, self.config.support_step)
        next_reward_state = None
        if lstm_state is not None:
            prefix = reward
            reward = prefix if parent_prefix is None else prefix - parent_prefix
            next_reward_state = torch.cat([lstm_state, prefix.unsqueeze(1)], dim=1)
        return self._predict(next_latent, reward, reward_logits, next_reward_state, "recurrent_inference")

    def _predict(self, latent, reward, reward_logits, reward_state, call: str, obs=None,
                 obs_finite: Optional[torch.Tensor] = None, predicted: bool = True) -> ModelOutput:
        with self.autocast():
            policy_logits, value_logits, terminal_logit = self.prediction(latent)
        policy_logits, value_logits = policy_logits.float(), value_logits.float()
        if terminal_logit is not None:
            terminal_logit = terminal_logit.float()
        value_ensemble = support_to_scalar(value_logits, self.config.support_step)
        value = value_ensemble.mean(dim=1)
        if self.check_outputs:
            self._check_finite(value, reward, policy_logits, terminal_logit, call, obs, obs_finite)
        # Probability > 0.5 is logit > 0: the search reads the flag, the learner the logit.
        terminal = None if terminal_logit is None or not predicted else terminal_logit > 0
        return ModelOutput(latent=latent, reward=reward, value=value, policy_logits=policy_logits,
                           reward_logits=reward_logits, value_logits=value_logits,
                           value_ensemble=value_ensemble, terminal=terminal, terminal_logit=terminal_logit,
                           reward_state=reward_state)

    @staticmethod
    def _check_finite(value, reward, policy_logits, terminal_logit, call, obs, obs_finite) -> None:
        # One host sync per call; a diverged network must fail loudly, not steer the search.
        finite = torch.isfinite(value).all() & torch.isfinite(reward).all() & torch.isfinite(policy_logits).all()
        if terminal_logit is not None:
            finite = finite & torch.isfinite(terminal_logit).all()
        if obs_finite is not None:
            finite = finite & obs_finite.all()
        if not bool(finite):
            if obs_finite is not None and not bool(obs_finite.all()):
                raise _non_finite_observation(call, obs, obs_finite)
            raise FloatingPointError(
                f"Model.{call}: the network produced NaN or inf in its value, reward, policy or terminal output "
                f"(training has probably diverged: lower the learning rate or clip gradients)")

    @contextlib.contextmanager
    def unchecked_outputs(self):
        """Inside: no per-call finiteness check (and so no host sync per call). For the learner's
        unroll, which checks its total loss once instead, so that a compiled loss is one graph."""
        self.check_outputs = False
        try:
            yield self
        finally:
            self.check_outputs = True

    # ----------------------------------------------------------------- learner helpers

    def project(self, latent: torch.Tensor, with_grad: bool) -> torch.Tensor:
        """Consistency projection [B, projection_dim].

        with_grad=True: the online branch, projection then prediction head (for predicted latents).
        with_grad=False: the target branch, projection only, under no_grad (for the latents of the
        real next observations). The learner minimizes the negative cosine similarity of the two.
        """
        with self.autocast():
            return self.projection(latent, with_grad).float()

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Predicted observation for each latent: [B, *obs_shape], or for pixel images the frame
        downsampled to [B, C, 4h, 4w] and scaled by 1/255 (nets/conv.py FrameDecoder)."""
        predicted = self._decoder_output(latent)
        return predicted if self.obs_scale is None else self.obs_scale.restore(predicted)

    def _decoder_output(self, latent: torch.Tensor) -> torch.Tensor:
        """The decoder's output in the units the representation reads (rescaled with obs_scale)."""
        if self.decoder is None:
            raise RuntimeError("this model has no observation decoder: it was trained with net.use_decoder=false")
        with self.autocast():
            return self.decoder(latent).float()

    def reconstruction_loss(self, latent: torch.Tensor, obs: ArrayLike) -> torch.Tensor:
        """Per sample, shape [B]: the mean squared error of decode(latent) against obs, for grids
        (net.grid_values) the decoder's cross-entropy (nets/grid.py), for pixel images against the
        downsampled frame (nets/conv.py FrameDecoder)."""
        if isinstance(self.decoder, (GridDecoder, FrameDecoder)):
            with self.autocast():
                return self.decoder.loss(latent, torch.as_tensor(obs, device=self.device)).float()
        target = torch.as_tensor(obs, device=self.device).float()
        if self.obs_scale is not None:  # compared where the representation reads them: every entry weighs alike
            target = self.obs_scale(target)
        return (self._decoder_output(latent) - target).pow(2).flatten(1).mean(dim=1)


def _non_finite_observation(call: str, obs: torch.Tensor, obs_finite: torch.Tensor) -> NonFiniteObservation:
    rows = torch.nonzero(~obs_finite).flatten().tolist()
    shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
    example = obs[rows[0]].flatten()[:8].tolist()
    return NonFiniteObservation(
        f"the observation given to Model.{call} is not finite: row(s) {shown} of the batch of {obs.shape[0]} "
        f"hold NaN or inf (row {rows[0]} starts {example}); the input is at fault, not the network - check "
        f"the environment, its wrappers or the observation passed in")


def build_model(obs_space_shape: Tuple[int, ...], num_actions: int, config: Optional[NetConfig] = None,
                device: "str | torch.device" = "auto", obs_bounds=None) -> Model:
    """Build, check against `config.budget`, and move to `device` ("auto": CUDA if available).
    obs_bounds: the observation space's (low, high), read when config.obs_scale is 'bounds'."""
    return Model(obs_space_shape, num_actions, config or NetConfig(), obs_bounds).to(resolve_device(device))
