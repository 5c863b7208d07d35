"""Torch models for tabular credit data and the local training step every bank runs.

Two models cover the horizontal use case: logistic regression (the scorecard baseline that
regulators understand) and a small MLP. Both output a logit; the loss is binary cross-entropy
with an optional positive-class weight, because defaults are the minority class (~22 % on
default_credit, a few % in SME portfolios).

The weights travel as a list of numpy arrays in a fixed order (``model.state_dict()`` order), so
federated aggregation, secure aggregation and CKKS all see the same flat layout. Local training
supports FedProx: the proximal term ``mu/2 * ||w - w_global||^2`` keeps a bank's model near the
global one when portfolios are non-IID; ``mu = 0`` is plain FedAvg.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

MODEL_KINDS = ("lr", "mlp")


@dataclass(frozen=True)
class ModelSpec:
    """What to build: ``kind`` ("lr" or "mlp"), input width and MLP hidden layer sizes."""

    kind: str
    n_features: int
    hidden: tuple[int, ...] = field(default=(32,))

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model kind {self.kind!r} is not one of {MODEL_KINDS}")
        if self.n_features < 1:
            raise ValueError(f"a model needs at least one feature, got {self.n_features}")
        if self.kind == "mlp" and (not self.hidden or min(self.hidden) < 1):
            raise ValueError(f"MLP hidden sizes must be positive, got {self.hidden}")


def build_model(spec: ModelSpec, seed: int = 0) -> nn.Module:
    """A freshly initialised model; the same ``seed`` gives the same weights on every node."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if spec.kind == "lr":
            model: nn.Module = nn.Sequential(nn.Linear(spec.n_features, 1))
        else:
            layers: list[nn.Module] = []
            width = spec.n_features
            for h in spec.hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            layers.append(nn.Linear(width, 1))
            model = nn.Sequential(*layers)
    finally:
        torch.random.set_rng_state(gen_state)
    return model.double()


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """Model weights as float64 numpy arrays in state_dict order (copies)."""
    return [t.detach().cpu().numpy().astype(np.float64, copy=True) for t in model.state_dict().values()]


def weight_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in model.state_dict().values()]


def set_weights(model: nn.Module, arrays: list[np.ndarray]) -> None:
    """Load ``arrays`` (state_dict order); a count or shape mismatch raises ValueError."""
    keys = list(model.state_dict().keys())
    if len(arrays) != len(keys):
        raise ValueError(f"model has {len(keys)} weight tensors, got {len(arrays)} arrays")
    state = {}
    for key, arr, ref in zip(keys, arrays, model.state_dict().values()):
        a = np.asarray(arr, dtype=np.float64)
        if tuple(a.shape) != tuple(ref.shape):
            raise ValueError(f"weight {key!r} has shape {tuple(ref.shape)}, got {tuple(a.shape)}")
        state[key] = torch.from_numpy(a.copy())
    model.load_state_dict(state)


def pos_weight(labels: np.ndarray, mode: str) -> float:
    """Positive-class weight for BCE: 1 for ``"none"``, #neg/#pos for ``"balanced"``."""
    if mode == "none":
        return 1.0
    if mode != "balanced":
        raise ValueError(f"class_weight must be 'none' or 'balanced', got {mode!r}")
    y = np.asarray(labels)
    pos = int(y.sum())
    neg = int(y.size - pos)
    if pos == 0 or neg == 0:
        return 1.0
    return neg / pos


@dataclass(frozen=True)
class TrainConfig:
    """One local training call: epochs over the bank's rows with mini-batch SGD/Adam."""

    epochs: int = 1
    batch_size: int = 256
    lr: float = 0.05
    optimizer: str = "sgd"  # "sgd" (with momentum 0.9) or "adam"
    mu: float = 0.0  # FedProx proximal strength; 0 = FedAvg
    pos_weight: float = 1.0
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}")
        if self.mu < 0:
            raise ValueError(f"FedProx mu must be >= 0, got {self.mu}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> dict[str, float]:
    """Train ``model`` in place on (x, y); returns the mean training loss of the last epoch.

    When ``cfg.mu > 0`` the weights the model starts from are taken as the global model and
    the FedProx proximal term pulls towards them.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} feature rows but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise ValueError("no training rows")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float64)).reshape(-1, 1)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([cfg.pos_weight], dtype=torch.float64))
    params = list(model.parameters())
    step = _Optimizer(params, cfg)
    global_params = [p.detach().clone() for p in params] if cfg.mu > 0 else []
    gen = torch.Generator().manual_seed(cfg.seed)
    n = xt.shape[0]
    model.train()
    last = 0.0
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            for p in params:
                p.grad = None
            loss = loss_fn(model(xt[idx]), yt[idx])
            if global_params:
                prox = sum(((p - g) ** 2).sum() for p, g in zip(params, global_params))
                loss = loss + 0.5 * cfg.mu * prox
            loss.backward()
            step()
            total += float(loss.detach()) * idx.numel()
        last = total / n
    if not np.isfinite(last):
        raise FloatingPointError(f"training diverged (loss {last}); lower the learning rate")
    return {"train_loss": last}


class _Optimizer:
    """SGD with momentum 0.9, or Adam, written out in a few tensor ops.

    Deliberately not ``torch.optim``: its first use imports torch._dynamo, which costs ~5 s per
    process -- paid by every simulated bank process on a small machine -- for no benefit here.
    """

    def __init__(self, params: Sequence[torch.Tensor], cfg: TrainConfig) -> None:
        self.params, self.cfg, self.t = params, cfg, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params] if cfg.optimizer == "adam" else []

    @torch.no_grad()
    def __call__(self) -> None:
        cfg = self.cfg
        self.t += 1
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                continue
            if cfg.weight_decay:
                g = g + cfg.weight_decay * p
            if cfg.optimizer == "sgd":
                self.m[i].mul_(0.9).add_(g)
                p.sub_(cfg.lr * self.m[i])
            else:
                b1, b2 = 0.9, 0.999
                self.m[i].mul_(b1).add_(g, alpha=1 - b1)
                self.v[i].mul_(b2).addcmul_(g, g, value=1 - b2)
                mhat = self.m[i] / (1 - b1**self.t)
                vhat = self.v[i] / (1 - b2**self.t)
                p.sub_(cfg.lr * mhat / (vhat.sqrt() + 1e-8))


def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Probability of default for each row of ``x``."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)))
    return torch.sigmoid(logits).numpy().ravel()
