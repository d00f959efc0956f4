"""The classifier's differentiable forward: a plain ``torch.nn.Module`` (picklable).

Imports torch; :mod:`sepcheck.classifier` loads it on first use of ``LipschitzScores``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.devices import torch_device
from ..core.errors import SepcheckError
from ..engine.backends.torch_backend import as_tensor
from ..engine.sources import is_source

if TYPE_CHECKING:
    from .estimator import LipschitzNNClassifier


class LipschitzScores(torch.nn.Module):
    """Torch forward of :class:`LipschitzNNClassifier`: x (n, ...) -> scores (n, n_classes).

    The nearest training row of each class is found by the exact engine
    (:func:`sepcheck.engine.nearest_by_class`, ties to the lowest index) on the
    training rows as the module sees them (floats on the classifier's scale, in the module's
    dtype); then d(x, X_i) = ||x - X_i[nearest]|| is recomputed with gradient. That is the
    value of the min and one of its (sub)gradients, so gradient attacks see the true function.

    Parameters
    ----------
    clf
        A fitted :class:`LipschitzNNClassifier`.
    device
        Where the training rows live ('auto', 'cpu', 'cuda', 'cuda:N');
        ``module.to(device)`` moves them later. The engine searches on that device.
    block_size
        Rows per engine block (default: the engine's choice).

    Notes
    -----
    The module's dtype is float64 for float64 training data and float32 otherwise. The
    training set is held in its own dtype (uint8 stays uint8, shape (n, features)); the
    engine's float copy of it is rebuilt on demand and never pickled.
    """

    def __init__(self, clf: LipschitzNNClassifier, device: str = "cpu", block_size: int | None = None) -> None:
        super().__init__()
        clf.check_fitted()
        dev = torch_device(device)
        X = clf.X_train_
        X = np.ascontiguousarray(X.read(0, len(X)) if is_source(X) else X)  # a streamed fit: rows read here
        self.float_dtype = torch.float64 if X.dtype == np.float64 else torch.float32
        raw = bool(clf.engine_options.get("raw", False))
        self.scale = 255.0 if (X.dtype == np.uint8 and not raw) else 1.0
        self.p = float(clf.p_)
        self.r = float(clf.r_)
        self.clip = bool(clf.clip)
        self.block_size = int(block_size) if block_size else None
        self.backend = str(clf.engine_options.get("backend", "auto"))
        self.memory_budget = clf.engine_options.get("memory_budget")
        self.classes = clf.classes_.copy()
        codes = np.searchsorted(clf.classes_, clf.y_train_).astype(np.int64)
        self.register_buffer("reference", as_tensor(X).to(dev), persistent=False)
        self.register_buffer("labels", torch.from_numpy(codes).to(dev), persistent=False)
        self._search_rows: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_search_rows"] = None  # a cache: rebuilt from the reference buffer
        return state

    def _rows(self, idx: Any) -> Any:
        """Training rows (any index shape) as floats on the classifier's scale."""
        r = self.reference[idx].to(self.float_dtype)
        return r / self.scale if self.scale != 1.0 else r

    def _engine_rows(self) -> np.ndarray:
        """The training rows as the module computes with them (same dtype and rounding)."""
        if self._search_rows is None:
            self._search_rows = self._rows(slice(None)).cpu().numpy()
        return self._search_rows

    def nearest_indices(self, x: Any) -> Any:
        """(n, n_classes) index of the nearest training row of each class (no gradient),
        found exactly by the engine on the module's device."""
        from ..engine import nearest_by_class

        dev = self.reference.device
        q = x.detach().to(self.float_dtype).cpu().numpy()
        _, idx, _ = nearest_by_class(
            self._engine_rows(), self.labels.cpu().numpy(), q, norm=self.p, backend=self.backend,
            device=str(dev), block_size=self.block_size, memory_budget=self.memory_budget,
        )
        return torch.from_numpy(idx).to(x.device)

    def distances(self, x: Any) -> Any:
        """(n, n_classes) distances d(x, X_i), differentiable in x."""
        x = x.reshape(x.shape[0], -1).to(self.float_dtype)
        if x.shape[1] != self.reference.shape[1]:
            raise SepcheckError(
                f"input has {x.shape[1]} features per row but the classifier was fitted "
                f"on {self.reference.shape[1]}: pass rows from the same feature space"
            )
        idx = self.nearest_indices(x)
        diff = x[:, None, :] - self._rows(idx.to(self.reference.device)).to(x.device)
        return torch.linalg.vector_norm(diff, ord=self.p, dim=-1)

    def forward(self, x: Any) -> Any:
        """Scores 1 - d(x, X_i) / r (clipped at 0 with ``clip``)."""
        s = 1.0 - self.distances(x) / self.r
        return s.clamp(min=0.0) if self.clip else s

    def predict(self, x: Any) -> Any:
        """Labels (a numpy array) of the argmax of the scores."""
        with torch.no_grad():
            cols = torch.argmax(self.forward(x), dim=1).cpu().numpy()
        return self.classes[cols]


__all__ = ["LipschitzScores"]
