"""The actor-critic MLP in numpy, on one flat parameter buffer.

Holds the forward pass (inference and training share it) and the hand-written backward pass of the
policy-updater.

The update path's cost is dominated by per-operation overhead, not arithmetic: the networks are tiny
(4-64-64-2) and a minibatch is a few hundred rows. numpy's per-call overhead is a fraction of an
autograd graph's, so hand-written gradients make a PPO epoch several times cheaper than torch on CPU.
The tests check every gradient against torch autograd.

Layout: every named tensor of the spec (``pi.0.weight`` ... ``log_std``) is a view into one float32
vector, so gradient-norm clipping and Adam are a handful of vector operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftg_common.policy.spec import PolicySpec, check_tensors, tensor_shapes

Layer = tuple[np.ndarray, np.ndarray]


class FlatParams:
    """Named float32 views into one contiguous vector ``flat`` (and the same layout for gradients)."""

    def __init__(self, spec: PolicySpec, flat: np.ndarray | None = None) -> None:
        self.spec = spec
        self.shapes = tensor_shapes(spec)
        self.names = sorted(self.shapes)
        self.offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for name in self.names:
            size = int(np.prod(self.shapes[name]))
            self.offsets[name] = (start, start + size)
            start += size
        self.size = start
        self.flat = np.zeros(start, dtype=np.float32) if flat is None else flat
        if self.flat.shape != (start,) or self.flat.dtype != np.float32:
            raise ValueError(
                f"flat parameters must be float32 [{start}], got {self.flat.dtype} {self.flat.shape}"
            )
        # Views stay valid while ``flat`` is updated in place (as Adam does); built once because
        # the forward pass of a rollout step is dominated by per-call overhead, not arithmetic.
        self._views = {name: self._slice(name, self.flat) for name in self.names}
        depth = len(spec.net_arch)
        # (weight [in, out], bias [out]) per layer: transposed views, still writing through to ``flat``.
        self.layers: dict[str, list[Layer]] = {
            net: [(self._views[f"{net}.{i}.weight"].T, self._views[f"{net}.{i}.bias"]) for i in range(depth)]
            + [(self._views[f"{net}.out.weight"].T, self._views[f"{net}.out.bias"])]
            for net in ("pi", "vf")
        }

    def _slice(self, name: str, buf: np.ndarray) -> np.ndarray:
        a, b = self.offsets[name]
        return buf[a:b].reshape(self.shapes[name])

    def view(self, name: str, buf: np.ndarray | None = None) -> np.ndarray:
        """Tensor ``name`` as a view into the parameters, or into ``buf`` (same layout, e.g. a gradient)."""
        return self._views[name] if buf is None else self._slice(name, buf)

    def load(self, tensors: dict[str, np.ndarray]) -> FlatParams:
        """Copy a flat tensor dict (exact names and shapes of the spec) into the parameters."""
        check_tensors(self.spec, tensors)
        for name in self.names:
            self.view(name)[...] = tensors[name]
        return self

    def tensors(self, buf: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Name -> copy of each tensor (of the parameters, or of ``buf``)."""
        return {name: self.view(name, buf).copy() for name in self.names}


@dataclass
class Cache:
    """What the backward pass needs: inputs and activations of every layer of both nets."""

    obs: np.ndarray
    pi_acts: list[np.ndarray]
    vf_acts: list[np.ndarray]


def fuse_actor_critic(pi: list[Layer], vf: list[Layer]) -> list[Layer]:
    """The policy and value MLPs (same depth) as one MLP whose outputs are [pi head | value].

    The first layer's columns are concatenated (both nets read the same input), every later weight
    is block-diagonal, so one forward pass computes both nets with half the numpy calls: a rollout
    step's cost is per-call overhead, not arithmetic. Results equal the two separate passes to
    float32 rounding (the zero blocks change BLAS's summation order, not the sums).

    Args:
        pi: (weight [in, out], bias [out]) per layer of the policy net, the output layer last.
        vf: the same for the value net, with as many layers.

    Returns:
        Layers whose output is [B, pi_out + vf_out].
    """
    if len(pi) != len(vf):
        raise ValueError(f"pi has {len(pi)} layers and vf {len(vf)}: only equal depths fuse")
    (w_pi, b_pi), (w_vf, b_vf) = pi[0], vf[0]
    fused: list[Layer] = [(np.concatenate([w_pi, w_vf], axis=1), np.concatenate([b_pi, b_vf]))]
    for (w_pi, b_pi), (w_vf, b_vf) in zip(pi[1:], vf[1:], strict=True):
        w = np.zeros((w_pi.shape[0] + w_vf.shape[0], w_pi.shape[1] + w_vf.shape[1]), dtype=np.float32)
        w[: w_pi.shape[0], : w_pi.shape[1]] = w_pi
        w[w_pi.shape[0] :, w_pi.shape[1] :] = w_vf
        fused.append((w, np.concatenate([b_pi, b_vf])))
    return fused


def mlp_forward(layers: list[Layer], x: np.ndarray, relu: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """One MLP on x [B, in]: hidden layers with tanh (or ReLU), then a linear output layer.

    Args:
        layers: (weight [in, out], bias [out]) per layer, the output layer last.
        x: [B, in] inputs.
        relu: ReLU activations instead of tanh.

    Returns:
        (output [B, out], the hidden layers' activations, each [B, width]).
    """
    *hidden, (w_out, b_out) = layers
    acts = []
    for w, b in hidden:
        # A fresh matmul result, so the in-place ops below never touch the caller's array.
        x = x @ w
        x += b
        if relu:
            np.maximum(x, 0.0, out=x)
        else:
            np.tanh(x, out=x)
        acts.append(x)
    y = x @ w_out
    y += b_out
    return y, acts


def forward(p: FlatParams, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, Cache]:
    """Both nets on obs [B, obs_dim]: (actor head [B, out_dim] (logits or mean), values [B], cache)."""
    relu = p.spec.activation == "relu"
    head, pi_acts = mlp_forward(p.layers["pi"], obs, relu)
    value, vf_acts = mlp_forward(p.layers["vf"], obs, relu)
    return head, value[:, 0], Cache(obs, pi_acts, vf_acts)


def _mlp_backward(
    p: FlatParams,
    net: str,
    g_out: np.ndarray,
    cache: Cache,
    acts: list[np.ndarray],
    grad: np.ndarray,
    relu: bool,
) -> None:
    """Accumulate d loss / d params of one net into ``grad`` given d loss / d output [B, out]."""
    n = len(acts)
    p.view(f"{net}.out.weight", grad)[...] = g_out.T @ acts[-1]
    p.view(f"{net}.out.bias", grad)[...] = g_out.sum(0)
    g = g_out @ p.view(f"{net}.out.weight")
    for i in range(n - 1, -1, -1):
        h = acts[i]
        # tanh' = 1 - h^2 and relu' = [h > 0], both from the layer's output.
        g = g * (h > 0) if relu else g * (1.0 - h * h)
        below = acts[i - 1] if i > 0 else cache.obs
        p.view(f"{net}.{i}.weight", grad)[...] = g.T @ below
        p.view(f"{net}.{i}.bias", grad)[...] = g.sum(0)
        if i > 0:
            g = g @ p.view(f"{net}.{i}.weight")


def backward(
    p: FlatParams, cache: Cache, g_head: np.ndarray, g_values: np.ndarray, g_log_std: np.ndarray | None = None
) -> np.ndarray:
    """Gradient of the loss w.r.t. every parameter, in the flat layout.

    Args:
        p: the parameters the forward pass used.
        cache: what ``forward`` returned for this minibatch.
        g_head: [B, out_dim] d loss / d actor head.
        g_values: [B] d loss / d V.
        g_log_std: [action_dim] d loss / d log_std (Box actions only).

    Returns:
        [p.size] float32 gradient, laid out like ``p.flat``.
    """
    grad = np.zeros(p.size, dtype=np.float32)
    relu = p.spec.activation == "relu"
    _mlp_backward(p, "pi", g_head, cache, cache.pi_acts, grad, relu)
    _mlp_backward(p, "vf", g_values[:, None], cache, cache.vf_acts, grad, relu)
    if g_log_std is not None:
        p.view("log_std", grad)[...] = g_log_std
    return grad
