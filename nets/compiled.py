"""The MLP family's inference compiled with Numba, so a whole search can run without torch.

Inside the search, torch's per-call overhead is most of the cost of a small network: a
64-wide MLP step takes tens of microseconds through torch and a few through BLAS called from
Numba (benchmarks/results/search_vs_mctx.json). `export(model)` gives the representation, dynamics
and prediction weights as one flat float32 array with a table of its layers (a `Program`);
`initial_step` computes what `Model.initial_inference` does, and `recurrent_step` computes, for a
batch, what `Model.recurrent_inference` does — the next latent
(normalized), the decoded reward, the policy logits, the mean decoded value and the terminal
flag — and writes the scalars straight into the search's packed rows (planners/kernels.py,
COL_*), so that planners/fused.py runs every simulation of a search in one compiled call.

The torch model is the reference: tests/test_compiled.py checks the two agree. Covered: the MLP
family (grids too: the one-hot belongs to the representation, which stays in torch) without the
value-prefix LSTM, in float32 on the CPU. For anything else `export` returns None and the search
calls torch.

The Program does not copy the weights: `export` moves the exported layers' parameters into one
flat float32 buffer (each parameter's `.data` becomes a view of it) and the Program reads that
buffer, so every in-place update (an optimizer step, fused or not, `load_state_dict`, writes
through `.data` or a numpy view) is seen by the next search with nothing to compare. Only a
parameter given new memory (assigned anew, `.data =`, `.to()`) unbinds a layer, and `export`
notices that by identity and address and binds again. A copy would have to be compared with the
parameters by content before every search (version counters miss a fused optimizer step and
numpy writes), which was most of a B = 1 search's fixed cost (README, "Speed").

Threads: `np.dot` in Numba calls SciPy's OpenBLAS, whose default is a thread per core. Its idle
threads busy-wait after every call, which on a small machine slowed the torch calls around the
search several-fold. So the first export limits the process's BLAS libraries (NumPy's too, for the
rest of the process) to as many threads as torch has: one, the project default.
"""
from __future__ import annotations

import math
import weakref
from typing import NamedTuple, Optional

import numpy as np
import torch
from numba import njit
from torch import nn

from common.numba_cache import forget_stale_cache
from nets import support
from nets.support import TRANSFORM_EPS

# Rows of Program.nets: each network is a run of rows [first, last) of Program.layers (an empty
# run where the model has no such network).
NET_REPRESENTATION, NET_DYNAMICS, NET_REWARD, NET_POLICY, NET_TERMINAL, NET_VALUE = 0, 1, 2, 3, 4, 5
NORM_LAYERNORM, NORM_MINMAX = 0, 1
_LAYERNORM_EPS = 1e-5  # torch.nn.functional.layer_norm's default
_MINMAX_FLOOR = 1e-5  # LatentNorm's guard against a constant latent

# Columns of the packed rows (planners/kernels.py COL_*), repeated here so nets/ does not import
# planners/; tests/test_compiled.py checks they agree.
COL_REWARD, COL_VALUE, COL_LOGITS = 0, 1, 2


class Program(NamedTuple):
    """A model's representation (where compiled), dynamics and prediction networks as data Numba
    compiles against."""

    weights: np.ndarray  # float32 [P]: every Linear's weight [out, in] and bias [out], the parameters' own memory
    layers: np.ndarray  # int64 [n, 4]: weight offset, bias offset, in features, out features
    nets: np.ndarray  # int64 [5 + E, 2]: first and end layer of each network (NET_*; E value heads)
    latent_norm: int  # NORM_*
    reward_support: int  # S of the reward's 2S+1 bins
    value_support: int
    support_step: float  # spacing of both supports' bins in h(x)-space
    num_actions: int
    latent_dim: int
    has_terminal: bool
    # Whether NET_REPRESENTATION is the model's whole representation (observations read as numbers,
    # flattened); a grid's one-hot is not compiled, so those roots go through torch.
    has_representation: bool
    # The first layers of the heads that read the latent (NET_REWARD onwards) lie back to back in
    # `weights` from offset heads_offset, one [heads_rows, latent_dim] matrix: one BLAS call computes
    # them all (three or more calls otherwise, per simulation). heads_rows 0: run them one by one.
    heads_offset: int
    heads_rows: int


class _Export(NamedTuple):
    """What `export` keeps per model to tell, cheaply, whether its Program still reads the
    model's parameters."""

    linears: list  # the Linear layers the Program was built from, in Program order
    tensors: list  # each one's weight then bias, as they were bound
    addresses: list  # each tensor's data_ptr once bound: an address inside `buffer`
    buffer: torch.Tensor  # float32 [P]: the parameters' memory; Program.weights is its numpy view
    program: Program


# model -> _Export. Weak, so a model that is dropped is not kept alive.
_exported: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

# Each parameter starts on a 64-byte boundary of the flat buffer, where torch's CPU allocator
# puts a parameter of its own: BLAS may take other code paths for other alignments, and the
# learner's arithmetic should not depend on whether a search has run.
_ALIGN = 16  # float32 elements


def export(model) -> Optional[Program]:
    """`model`'s networks as a Program, or None where they are not covered (see the module
    docstring): the caller then uses `model.recurrent_inference`. The first call, and the first
    after a parameter was given new memory, binds the parameters to the Program's buffer."""
    from nets.model import Model  # nets.model imports nothing from here; kept local for clarity

    cached = _exported.get(model)
    if cached is not None and _bound(cached):  # unmoved memory: an unmoved device too
        _match_torch_threads()
        return cached.program
    if type(model) is not Model or model.family != "mlp" or model.config.value_prefix_lstm:
        return None
    if model.device.type != "cpu":
        return None
    linears, ranges, has_representation = _layers(model)
    tensors = [t for lin in linears for t in (lin.weight, lin.bias)]
    if any(t.dtype != torch.float32 for t in tensors):
        return None
    _match_torch_threads()
    heads = [int(ranges[net][0]) for net in range(NET_REWARD, len(ranges)) if ranges[net][1] > ranges[net][0]]
    # Buffer order: the heads' first weights back to back (each a whole number of alignment units,
    # so every one still starts aligned), then everything else.
    stack = all(linears[i].weight.numel() % _ALIGN == 0 for i in heads)
    first = [2 * i for i in heads] if stack else []
    order = first + [k for k in range(len(tensors)) if k not in first]
    buffer, placed = _bind([tensors[k] for k in order])
    offsets = [0] * len(tensors)
    for k, offset in zip(order, placed):
        offsets[k] = offset
    heads_rows = sum(linears[i].weight.shape[0] for i in heads) if stack else 0
    program = _program(model, buffer.numpy(), offsets, ranges, has_representation, linears,
                       offsets[first[0]] if stack else 0, heads_rows)
    _exported[model] = _Export(linears, tensors, [t.data_ptr() for t in tensors], buffer, program)
    return program


def _bind(tensors) -> tuple:
    """Copy `tensors` into one flat float32 buffer, each at an aligned offset, and make each
    tensor's `.data` a view of its part. Returns the buffer and the offsets."""
    offsets, size = [], 0
    for t in tensors:
        offsets.append(size)
        size += -(-t.numel() // _ALIGN) * _ALIGN
    # Outside inference mode even when called inside it: the parameters become views of this
    # buffer, and an inference tensor's views can never be trained again.
    with torch.inference_mode(False), torch.no_grad():
        buffer = torch.zeros(size, dtype=torch.float32)
        for t, offset in zip(tensors, offsets):
            view = buffer[offset:offset + t.numel()].view(t.shape)
            view.copy_(t.detach())
            t.data = view
    return buffer, offsets


def _bound(cached: _Export) -> bool:
    """Whether every layer still holds the parameters that were bound, at their address in the
    buffer. (Read from each layer's parameter dict: `lin.weight` goes through
    nn.Module.__getattr__, which would triple this check's cost, paid before every search.)"""
    i = 0
    for lin in cached.linears:
        held = lin._parameters
        if held["weight"] is not cached.tensors[i] or held["bias"] is not cached.tensors[i + 1]:
            return False
        i += 2
    return [t.data_ptr() for t in cached.tensors] == cached.addresses


def _layers(model):
    """The Linear layers of the networks the kernels run, in NET_* order, and each network's run
    of them."""
    representation = model.representation
    has_representation = type(representation).__name__ == "MLPRepresentation"
    dyn, pred = model.dynamics, model.prediction
    nets = [representation.net if has_representation else None, dyn.net, dyn.reward.out, pred.policy,
            pred.terminal] + list(pred.value.heads)
    linears, ranges = [], []
    for net in nets:
        first = len(linears)
        if net is not None:
            linears += _linears(net)
        ranges.append((first, len(linears)))
    return linears, np.asarray(ranges, np.int64), has_representation


def _program(model, weights, offsets, ranges, has_representation, linears, heads_offset, heads_rows) -> Program:
    layers = np.zeros((len(linears), 4), np.int64)
    for i, lin in enumerate(linears):
        w = lin.weight
        layers[i] = (offsets[2 * i], offsets[2 * i + 1], w.shape[1], w.shape[0])
    return Program(weights=weights, layers=layers, nets=ranges,
                   latent_norm=NORM_LAYERNORM if model.dynamics.norm.kind == "layernorm" else NORM_MINMAX,
                   reward_support=model.config.reward_support_size,
                   value_support=model.config.value_support_size,
                   support_step=float(model.config.support_step),
                   num_actions=model.num_actions, latent_dim=model.config.latent_dim,
                   has_terminal=model.prediction.terminal is not None,
                   has_representation=has_representation, heads_offset=int(heads_offset), heads_rows=int(heads_rows))


_blas_threads: Optional[int] = None


def _match_torch_threads() -> None:
    """Limit the BLAS the kernels call to torch's thread count (see the module docstring), once
    per process and again whenever torch's count changes."""
    global _blas_threads
    threads = torch.get_num_threads()
    if threads != _blas_threads:
        import scipy.linalg.cython_blas  # noqa: F401  (Numba's np.dot calls it: loaded first, so the limit reaches it)
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads, user_api="blas")
        _blas_threads = threads


def _linears(net: nn.Sequential):
    """The Linear layers of an `mlp(...)` (Linear, ReLU, ..., Linear); anything else is refused,
    since the kernel puts a ReLU between consecutive layers and nothing more."""
    mods = list(net)
    for i, m in enumerate(mods):
        expected = nn.Linear if i % 2 == 0 else nn.ReLU
        if type(m) is not expected:
            raise TypeError(f"nets.compiled expects Linear/ReLU layers, found {type(m).__name__} in {net}")
    return mods[0::2]


# ---------------------------------------------------------------- kernels


# Activations are kept transposed, [features, B]: every loop over the batch then runs down a
# contiguous row (bias, ReLU, normalization and support decoding vectorize), and BLAS was faster
# on W @ X than on X @ W^T for this family's shapes at B = 1 to 64 (an ad-hoc comparison; the
# search as a whole: benchmarks/bench_search_vs_mctx.py).


@njit(cache=True)
def dense(program, layer, x, relu):
    """x [in, B] float32 -> W x + b [out, B], ReLU'd when `relu`."""
    w_off, b_off, n_in, n_out = program.layers[layer]
    w = program.weights[w_off:w_off + n_in * n_out].reshape((n_out, n_in))
    y = np.dot(w, x)
    add_bias(program, b_off, y, relu)
    return y


@njit(cache=True, inline="always")
def add_bias(program, b_off, y, relu):
    """y [out, B] += the bias at weights[b_off:], in place, then ReLU'd when `relu`."""
    for j in range(y.shape[0]):
        bias = program.weights[b_off + j]
        if relu:
            for i in range(y.shape[1]):
                y[j, i] = max(y[j, i] + bias, np.float32(0.0))
        else:
            for i in range(y.shape[1]):
                y[j, i] += bias


@njit(cache=True)
def run_net(program, net, x):
    """The MLP `net` (NET_*) on x [in, B]: ReLU between its layers, none after the last."""
    first, end = program.nets[net]
    for layer in range(first, end):
        x = dense(program, layer, x, layer < end - 1)
    return x


@njit(cache=True)
def head_layers(program, latent_t):
    """The first layers of all heads on latent_t [L, B], before their biases: [heads_rows, B]
    (Program.heads_rows > 0)."""
    n_in = latent_t.shape[0]
    w = program.weights[program.heads_offset:program.heads_offset + program.heads_rows * n_in]
    return np.dot(w.reshape((program.heads_rows, n_in)), latent_t)


@njit(cache=True)
def run_head(program, net, latent_t, heads):
    """The head `net` (NET_REWARD onwards) on latent_t [L, B]: its first layer's rows of `heads`
    (`head_layers`; they are written in place), or the whole net where the heads are not stacked."""
    if program.heads_rows == 0:
        return run_net(program, net, latent_t)
    first, end = program.nets[net]
    w_off, b_off, n_in, n_out = program.layers[first]
    row = (w_off - program.heads_offset) // n_in
    x = heads[row:row + n_out]
    add_bias(program, b_off, x, first < end - 1)
    for layer in range(first + 1, end):
        x = dense(program, layer, x, layer < end - 1)
    return x


@njit(cache=True)
def all_heads(program, latent_t):
    """`head_layers`, or an empty placeholder where the heads are not stacked."""
    if program.heads_rows == 0:
        return np.empty((0, latent_t.shape[1]), np.float32)
    return head_layers(program, latent_t)


@njit(cache=True)
def normalize_latent(h, kind, out, rows, out_t):
    """LatentNorm of every column i of h [L, B] into row rows[i] of `out` (the search's latent
    pool) and into `out_t` [L, B] (the heads' input)."""
    n, B = h.shape
    if kind == NORM_LAYERNORM:
        mean = np.zeros(B, np.float32)
        var = np.zeros(B, np.float32)
        for j in range(n):
            for i in range(B):
                mean[i] += h[j, i]
        for i in range(B):
            mean[i] /= n
        for j in range(n):
            for i in range(B):
                d = h[j, i] - mean[i]
                var[i] += d * d
        for i in range(B):  # reused as the inverse standard deviation
            var[i] = np.float32(1.0) / np.sqrt(var[i] / n + np.float32(_LAYERNORM_EPS))
        for j in range(n):
            for i in range(B):
                out_t[j, i] = (h[j, i] - mean[i]) * var[i]
    else:
        lo = h[0].copy()
        hi = h[0].copy()
        for j in range(1, n):
            for i in range(B):
                lo[i] = min(lo[i], h[j, i])
                hi[i] = max(hi[i], h[j, i])
        for i in range(B):  # reused as the scale
            hi[i] -= lo[i]
            if hi[i] < _MINMAX_FLOOR:
                hi[i] += np.float32(_MINMAX_FLOOR)
        for j in range(n):
            for i in range(B):
                out_t[j, i] = (h[j, i] - lo[i]) / hi[i]
    for i in range(B):
        for j in range(n):
            out[rows[i], j] = out_t[j, i]


_LOG2_E = np.float32(1.4426950408889634)
_LN_2 = np.float32(0.6931471805599453)


@njit(cache=True, inline="always")
def exp_nonpositive(x):
    """e^x for float32 x <= 0 as two parts: the float32 bits of 2^n (read them back through a
    float32 view of an int32 array) and 2^f, where x log2(e) = n + f, n an integer, |f| <= 1/2;
    2^f by the Taylor series of e^(f ln 2) to the 7th term (truncation error 5e-9, below float32
    rounding: relative error a few ulps near 0, growing as 6e-8 |x| from rounding x log2(e);
    torch decodes in float32 too). Unlike math.exp, which Numba calls one value at a
    time (without Intel's SVML), this is arithmetic that a loop over B rows runs in vector lanes:
    the support decoding below is most of a small network's step otherwise. Below 2^-126 it gives
    about 2^-126, not 0 (negligible beside the largest term, which is 1). No array is passed in:
    one would keep the loop from vectorizing."""
    y = max(x * _LOG2_E, np.float32(-126.0))
    n = np.floor(y + np.float32(0.5))
    r = (y - n) * _LN_2
    return (np.int32(n) + np.int32(127)) << 23, np.float32(1.0) + r * (np.float32(1.0) + r * (
        np.float32(1 / 2) + r * (np.float32(1 / 6) + r * (np.float32(1 / 24) + r * (
            np.float32(1 / 120) + r * (np.float32(1 / 720) + r * np.float32(1 / 5040)))))))


@njit(cache=True)
def decode_support(logits_t, support, step, out, column, weight):
    """Categorical logits over step * (-S..S), transposed (float32 [2S+1, B]), decoded to
    scalars and added, times `weight`, into out[:, column]: softmax expectation (in float32, as
    torch computes it), then h^-1 (nets/support.py). A row whose logits include NaN or +inf
    decodes to NaN."""
    K, B = logits_t.shape
    top = logits_t[0].copy()
    total = np.zeros(B, np.float32)
    mean = np.zeros(B, np.float32)
    term = np.empty(B, np.float32)
    scale_bits = np.empty(B, np.int32)
    scale = scale_bits.view(np.float32)
    for k in range(1, K):
        for i in range(B):
            top[i] = max(top[i], logits_t[k, i])
    for k in range(K):
        for i in range(B):
            scale_bits[i], term[i] = exp_nonpositive(logits_t[k, i] - top[i])
        bin_value = np.float32(k - support)
        for i in range(B):
            p = term[i] * scale[i]
            total[i] += p
            mean[i] += p * bin_value
    bad = np.zeros(B, np.bool_)
    for k in range(K):
        for i in range(B):
            bad[i] |= not logits_t[k, i] < np.inf  # NaN or +inf
    eps = TRANSFORM_EPS
    for i in range(B):
        y = step * np.float64(mean[i]) / np.float64(total[i])
        root = (math.sqrt(1.0 + 4.0 * eps * (abs(y) + 1.0 + eps)) - 1.0) / (2.0 * eps)
        scalar = math.copysign(root * root - 1.0, y) if y != 0.0 else 0.0
        out[i, column] += np.nan if bad[i] else weight * scalar


# Rows per pass through the networks in `recurrent_step`: a pass's activations (a dozen [64, TILE]
# float32 arrays) then stay in a core's L2 cache; at 384 rows they did not: a search of CartPole's
# 384 reanalysis roots took 6.9 ms untiled and 5.7 in tiles of 128 (README, "Speed").
TILE = 128


@njit(cache=True)
def recurrent_step(program, pool, parent_rows, action, child_rows, packed, terminal_column):
    """Model.recurrent_inference for B rows: the latents pool[parent_rows] (float32 [*, L]) and
    action [B] int64 in; the next latents into pool[child_rows], and into packed [B, 3 + 2A]
    (float64) the reward, the
    mean value, the policy logits (`predict`) and, at `terminal_column` (when >= 0), the terminal flag (1.0
    where the terminal logit is > 0). Returns False if any output is not finite (the torch path
    raises FloatingPointError then). Runs TILE rows at a time; each row's arithmetic is the same."""
    finite = True
    for start in range(0, len(action), TILE):
        end = min(len(action), start + TILE)
        finite &= _recurrent_tile(program, pool, parent_rows[start:end], action[start:end], child_rows[start:end],
                                  packed[start:end], terminal_column)
    return finite


@njit(cache=True)
def _recurrent_tile(program, pool, parent_rows, action, child_rows, packed, terminal_column):
    B, L = len(action), pool.shape[1]
    A = program.num_actions
    x = np.zeros((L + A, B), np.float32)
    for i in range(B):
        for j in range(L):
            x[j, i] = pool[parent_rows[i], j]
        x[L + action[i], i] = 1.0
    latent_t = np.empty((L, B), np.float32)
    normalize_latent(run_net(program, NET_DYNAMICS, x), program.latent_norm, pool, child_rows, latent_t)
    finite = True
    heads = all_heads(program, latent_t)
    for i in range(B):
        packed[i, COL_REWARD] = 0.0
    decode_support(run_head(program, NET_REWARD, latent_t, heads), program.reward_support, program.support_step,
                   packed, COL_REWARD, 1.0)
    for i in range(B):
        finite &= np.isfinite(packed[i, COL_REWARD])
    finite &= predict(program, latent_t, heads, packed)
    if program.has_terminal:
        terminal = run_head(program, NET_TERMINAL, latent_t, heads)
        for i in range(B):
            finite &= np.isfinite(terminal[0, i])
            if terminal_column >= 0:
                packed[i, terminal_column] = 1.0 if terminal[0, i] > 0.0 else 0.0
    return finite


@njit(cache=True)
def initial_step(program, obs, out_latent, packed):
    """Model.initial_inference for B rows of flattened float32 observations [B, D] (where
    program.has_representation): the latents into out_latent, and into packed a reward of 0,
    the mean value and the policy logits. Returns False if any output is not finite."""
    B, L = out_latent.shape
    latent_t = np.empty((L, B), np.float32)
    normalize_latent(run_net(program, NET_REPRESENTATION, np.ascontiguousarray(obs.T)), program.latent_norm,
                     out_latent, np.arange(B), latent_t)
    for i in range(B):
        packed[i, COL_REWARD] = 0.0
    return predict(program, latent_t, all_heads(program, latent_t), packed)


@njit(cache=True)
def predict(program, latent_t, heads, packed):
    """The prediction network at latent_t [L, B] (heads: `all_heads` of it): policy logits and
    the mean decoded value into packed. Returns False if one is not finite."""
    B = latent_t.shape[1]
    logits = run_head(program, NET_POLICY, latent_t, heads)
    value_heads = program.nets.shape[0] - NET_VALUE
    finite = True
    for i in range(B):
        packed[i, COL_VALUE] = 0.0
        for a in range(program.num_actions):
            packed[i, COL_LOGITS + a] = logits[a, i]
            finite &= np.isfinite(logits[a, i])
    for e in range(value_heads):
        decode_support(run_head(program, NET_VALUE + e, latent_t, heads), program.value_support, program.support_step,
                       packed, COL_VALUE, 1.0 / value_heads)
    for i in range(B):
        finite &= np.isfinite(packed[i, COL_VALUE])
    return finite


# These embed nets/support.py's TRANSFORM_EPS: their caches must not outlive a change to it.
for _kernel in (decode_support, predict, _recurrent_tile, recurrent_step, initial_step):
    forget_stale_cache(_kernel, support)
