"""AutoAttack (Croce & Hein 2020) from the Adversarial Robustness Toolbox (ART), imported lazily.

Install with ``pip install 'sepcheck[autoattack]'``. The standard version runs, each on the
points still classified correctly: APGD-CE (untargeted), APGD-T (the DLR loss, targeted at each
other class in turn), FAB-T and Square (untargeted, 5000 queries). ART has no FAB, so FAB-T is
left out (in Croce & Hein's evaluation it lowers robust accuracy by at most a few tenths of a
percent after APGD-T); every attack used is ART's own implementation, sepcheck only chains them
and counts the points that survive all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.errors import SepcheckError
from .attacks import eval_mode, threat_norm, unwrap

#: the optional extra that provides ART
EXTRA = "autoattack"


@dataclass
class AutoAttackSettings:
    """The standard AutoAttack budget: APGD 100 iterations, 1 restart each; APGD-T against
    every other class; Square 5000 queries. Smaller numbers make a cheaper (weaker) attack."""

    apgd_iter: int = 100
    apgd_restarts: int = 1
    square_queries: int = 5000
    seed: int = 0

    def describe(self, norm: str, eps: float) -> str:
        return (f"AutoAttack (ART) {norm} eps={eps:g}: APGD-CE and APGD-T (DLR, each other class) "
                f"{self.apgd_iter} iterations x {self.apgd_restarts} restart(s), Square "
                f"{self.square_queries} queries; FAB-T not run (ART has none)")


def require_art() -> Any:
    try:
        from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        raise SepcheckError("--attack autoattack needs the Adversarial Robustness Toolbox: "
                            "pip install 'sepcheck[autoattack]'") from None
    return AutoProjectedGradientDescent, SquareAttack, PyTorchClassifier


def autoattack_robust(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
                      settings: AutoAttackSettings | None = None, batch_size: int = 256) -> np.ndarray:
    """Per point (bool, shape (n,)): classified correctly and not fooled by any attack of the
    standard AutoAttack (see the module docstring) within ``Ball(x, eps) ∩ [0, 1]^d``."""
    APGD, Square, PyTorchClassifier = require_art()
    s = settings or AutoAttackSettings()
    norm = threat_norm(norm)
    p = np.inf if norm == "linf" else 2
    net = unwrap(model)
    dev = next(net.parameters()).device if any(True for _ in net.parameters()) else torch.device("cpu")
    xs = x.detach().float().cpu().numpy()
    ys = y.detach().cpu().numpy().astype(np.int64)
    with eval_mode(net):
        with torch.no_grad():
            n_classes = int(net(x[:1].to(dev).float()).shape[1])
        clf = PyTorchClassifier(net, loss=nn.CrossEntropyLoss(), input_shape=tuple(xs.shape[1:]),
                                nb_classes=n_classes, clip_values=(0.0, 1.0),
                                device_type="gpu" if dev.type == "cuda" else "cpu")
        np.random.seed(s.seed)
        torch.manual_seed(s.seed)
        robust = clf.predict(xs, batch_size=batch_size).argmax(1) == ys

        def run(attack: Any, targets: np.ndarray | None = None) -> None:
            idx = np.flatnonzero(robust)
            if idx.size == 0:
                return
            yy = ys[idx] if targets is None else targets[idx]
            adv = attack.generate(xs[idx], np.eye(n_classes, dtype=np.float32)[yy])
            delta = adv - xs[idx]  # an attack's point must stay in the threat model
            flat = delta.reshape(idx.size, -1)
            size = np.abs(flat).max(1) if norm == "linf" else np.linalg.norm(flat, axis=1)
            ok = (size <= eps * (1 + 1e-5) + 1e-7) & (adv.min(axis=tuple(range(1, adv.ndim))) >= -1e-6)
            fooled = (clf.predict(adv, batch_size=batch_size).argmax(1) != ys[idx]) & ok
            robust[idx[fooled]] = False

        common = dict(norm=p, eps=eps, eps_step=2 * eps, max_iter=s.apgd_iter, nb_random_init=s.apgd_restarts,
                      batch_size=batch_size, verbose=False)
        run(APGD(clf, targeted=False, loss_type="cross_entropy", **common))
        apgd_t = APGD(clf, targeted=True, loss_type="difference_logits_ratio", **common)
        for shift in range(1, n_classes):
            run(apgd_t, (ys + shift) % n_classes)
        run(Square(clf, norm=p, eps=eps, max_iter=s.square_queries, p_init=0.8, nb_restarts=1,
                   batch_size=batch_size, verbose=False))
    return robust


def autoattack_accuracy(model: nn.Module, X: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
                        settings: AutoAttackSettings | None = None, batch_size: int = 256,
                        device: torch.device | str = "cpu") -> float:
    """Accuracy under :func:`autoattack_robust`, in [0, 1]."""
    if X.shape[0] == 0:
        return 0.0
    r = autoattack_robust(model, X.to(device), y.to(device), eps=eps, norm=norm, settings=settings,
                          batch_size=batch_size)
    return float(r.mean())


__all__ = ["AutoAttackSettings", "require_art", "autoattack_robust", "autoattack_accuracy", "EXTRA"]
