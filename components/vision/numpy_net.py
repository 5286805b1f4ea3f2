"""A from-scratch L-layer fully connected network in NumPy: the CS230 notes' vectorised equations.

Column convention, as in the notes: X is (n_x, m) with one example per column, W{l} is (n_l, n_{l-1}),
b{l} is (n_l, 1); parameters live in a dict {"W1", "b1", ..., "WL", "bL"}.

    forward   Z[l] = W[l] A[l-1] + b[l],  A[l] = g(Z[l]) (hidden),  A[L] = sigmoid(Z[L])
    cost      J = -(1/m) sum(y log a + (1-y) log(1-a)) + (lambd / 2m) sum_l ||W[l]||_F^2
    backward  dZ[L] = A[L] - Y
              dW[l] = (1/m) dZ[l] A[l-1]^T + (lambd/m) W[l],  db[l] = (1/m) sum(dZ[l], axis=1)
              dA[l-1] = W[l]^T dZ[l],  dZ[l-1] = dA[l-1] * g'(Z[l-1])

Images [m, S, S, 3] become columns with `images_to_columns`: each image is flattened in C order of
its channels-last layout, so input unit k is pixel (row, col, channel) with k = (row * S + col) * 3 +
channel. The torch MLP (model.DayNightClassifier) flattens [B, S, S, 3] with reshape(B, -1), the same
order, so trained parameters copy into it unchanged (model.set_numpy_params / classifier_from_numpy):
this network is a training backend for the MLP, and the result is saved and served as the torch model.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
INITS = ("he", "xavier", "small_random", "zeros")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
LEAKY_SLOPE = 0.01  # torch's default negative slope
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8  # the notes' (and torch's) defaults


class Cache(NamedTuple):
    """What backward needs from one layer's forward pass."""
    A_prev: np.ndarray  # the layer's input (after the previous layer's dropout)
    Z: np.ndarray
    A: np.ndarray  # g(Z) before dropout
    D: np.ndarray | None  # dropout keep mask, None when no dropout


def images_to_columns(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 images [m, S, S, 3] -> X (S*S*3, m) in [0, 1] (x / 255, the model's preprocessing)."""
    images = np.asarray(images)
    X = images.reshape(len(images), -1).T.astype(dtype)
    X /= 255
    return X


def sigmoid(Z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(Z))  # never overflows
    return np.where(Z >= 0, 1 / (1 + e), e / (1 + e))


def _g(Z: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(Z, 0)
    if activation == "leaky_relu":
        return np.where(Z > 0, Z, LEAKY_SLOPE * Z)
    if activation == "tanh":
        return np.tanh(Z)
    if activation == "sigmoid":
        return sigmoid(Z)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _g_prime(Z: np.ndarray, A: np.ndarray, activation: str) -> np.ndarray:
    """g'(Z), using A = g(Z) where that is cheaper. At 0, ReLU's slope is 0 and leaky's 0.01 (as torch)."""
    if activation == "relu":
        return (Z > 0).astype(Z.dtype)
    if activation == "leaky_relu":
        return np.where(Z > 0, 1, LEAKY_SLOPE).astype(Z.dtype)
    if activation == "tanh":
        return 1 - A * A
    return A * (1 - A)  # sigmoid


def init_params(layer_dims: list[int], init: str = "he", seed: int = 0, dtype=np.float64) -> dict:
    """layer_dims = [n_x, n_1, ..., n_L]; weights ~ N(0, 1) * scale, biases zero.

    he: sqrt(2 / n_prev) (ReLU); xavier: the notes' sqrt(1 / n_prev); small_random: 0.01;
    zeros: the symmetry demo (every unit of a layer stays identical whatever the training).
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    rng = np.random.default_rng(seed)
    params = {}
    for l in range(1, len(layer_dims)):
        n_prev, n = layer_dims[l - 1], layer_dims[l]
        scale = {"he": np.sqrt(2 / n_prev), "xavier": np.sqrt(1 / n_prev), "small_random": 0.01, "zeros": 0.0}[init]
        params[f"W{l}"] = (rng.standard_normal((n, n_prev)) * scale).astype(dtype)
        params[f"b{l}"] = np.zeros((n, 1), dtype=dtype)
    return params


def forward(X: np.ndarray, params: dict, activation: str = "relu", keep_prob: float = 1.0,
            rng: np.random.Generator | None = None) -> tuple[np.ndarray, list[Cache]]:
    """-> (A[L] = p_night (1, m), caches). keep_prob < 1 applies inverted dropout to hidden layers."""
    L = len(params) // 2
    A, caches = X, []
    for l in range(1, L + 1):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]
        if l == L:
            caches.append(Cache(A, Z, sigmoid(Z), None))
            return caches[-1].A, caches
        A_act, D = _g(Z, activation), None
        A_next = A_act
        if keep_prob < 1.0:
            D = (rng or np.random.default_rng()).random(Z.shape, dtype=np.float32) < keep_prob
            A_next = A_act * D / np.asarray(keep_prob, dtype=Z.dtype)  # inverted: E[A] unchanged
        caches.append(Cache(A, Z, A_act, D))
        A = A_next
    raise ValueError("params hold no layers")


def cost(ZL: np.ndarray, Y: np.ndarray, params: dict | None = None, lambd: float = 0.0) -> float:
    """Cross-entropy from the output logits ZL = caches[-1].Z, plus the L2 term.

    log(1 + e^z) - y z equals -[y log a + (1-y) log(1-a)] for a = sigmoid(z) but never takes log(0).
    """
    Y = np.asarray(Y).reshape(1, -1)
    m = Y.shape[1]
    cross_entropy = float(np.sum(np.logaddexp(0, ZL) - Y * ZL)) / m
    if lambd and params:
        l2 = sum(float(np.sum(np.square(params[k]))) for k in params if k.startswith("W"))
        return cross_entropy + lambd / (2 * m) * l2
    return cross_entropy


def backward(AL: np.ndarray, Y: np.ndarray, caches: list[Cache], params: dict, activation: str = "relu",
             lambd: float = 0.0, keep_prob: float = 1.0) -> dict:
    """Gradients {"dW1", "db1", ...} of `cost` (mean over the m columns) with L2 `lambd`."""
    Y = np.asarray(Y, dtype=AL.dtype).reshape(1, -1)
    m, L = Y.shape[1], len(caches)
    grads = {}
    dZ = AL - Y
    for l in range(L, 0, -1):
        cache, W = caches[l - 1], params[f"W{l}"]
        grads[f"dW{l}"] = (dZ @ cache.A_prev.T) / m + (lambd / m) * W
        grads[f"db{l}"] = np.sum(dZ, axis=1, keepdims=True) / m
        if l > 1:  # dA[0] (the input's gradient) is never needed
            dA = W.T @ dZ
            prev = caches[l - 2]
            if prev.D is not None:
                dA = dA * prev.D / np.asarray(keep_prob, dtype=dA.dtype)  # same mask and scale as forward
            dZ = dA * _g_prime(prev.Z, prev.A, activation)
    return grads


class Optimizer:
    """The notes' update rules, applied in place to a parameter dict.

    sgd:      W -= lr dW
    momentum: v = b1 v + (1-b1) dW;  W -= lr v
    rmsprop:  s = b2 s + (1-b2) dW^2;  W -= lr dW / (sqrt(s) + eps)
    adam:     v, s as above, v_hat = v / (1-b1^t), s_hat = s / (1-b2^t);  W -= lr v_hat / (sqrt(s_hat) + eps)
    """

    def __init__(self, name: str, lr: float, params: dict):
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
        self.name, self.lr, self.t = name, lr, 0
        self.v = {k: np.zeros_like(p) for k, p in params.items()}
        self.s = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params: dict, grads: dict) -> None:
        self.t += 1
        for k, p in params.items():
            g = grads["d" + k]
            if self.name == "sgd":
                p -= self.lr * g
                continue
            if self.name in ("momentum", "adam"):
                self.v[k] = BETA1 * self.v[k] + (1 - BETA1) * g
            if self.name in ("rmsprop", "adam"):
                self.s[k] = BETA2 * self.s[k] + (1 - BETA2) * g * g
            if self.name == "momentum":
                p -= self.lr * self.v[k]
            elif self.name == "rmsprop":
                p -= self.lr * g / (np.sqrt(self.s[k]) + EPSILON)
            else:
                v_hat = self.v[k] / (1 - BETA1 ** self.t)
                s_hat = self.s[k] / (1 - BETA2 ** self.t)
                p -= self.lr * v_hat / (np.sqrt(s_hat) + EPSILON)


def gradient_check(params: dict, X: np.ndarray, Y: np.ndarray, activation: str = "relu", lambd: float = 0.0,
                   grads: dict | None = None, epsilon: float = 1e-7) -> float:
    """||grad - gradapprox|| / (||grad|| + ||gradapprox||) with centred differences, in float64.

    `grads` defaults to `backward`'s; pass your own to check another gradient. The notes' reading:
    < 1e-7 is right, > 1e-3 is a bug. No dropout (the cost must be deterministic).
    """
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64).reshape(1, -1)

    def J() -> float:
        _, caches = forward(X, params, activation)
        return cost(caches[-1].Z, Y, params, lambd)

    if grads is None:
        AL, caches = forward(X, params, activation)
        grads = backward(AL, Y, caches, params, activation, lambd)
    grad, approx = [], []
    for k, p in params.items():
        grad.append(np.asarray(grads["d" + k], dtype=np.float64).ravel())
        flat = p.reshape(-1)  # a view: nudging it nudges params[k]
        for i in range(flat.size):
            theta = flat[i]
            flat[i] = theta + epsilon
            j_plus = J()
            flat[i] = theta - epsilon
            j_minus = J()
            flat[i] = theta
            approx.append((j_plus - j_minus) / (2 * epsilon))
    grad, approx = np.concatenate(grad), np.asarray(approx)
    return float(np.linalg.norm(grad - approx) / (np.linalg.norm(grad) + np.linalg.norm(approx)))
