"""The run folder (after MadryLab's ``robustness``): everything needed to evaluate or resume.

::

    runs/NAME/
        config.json             all options, sepcheck and torch versions, data set, arch, seed
        log.jsonl               one JSON object per finished epoch (loss, accuracies, lr, time)
        checkpoint_latest.pt    model, optimizer, schedule and RNG states and the log so far
        checkpoint_final.pt     the trained model (state dict) and what is needed to rebuild it
        eval.json               written by ``sepcheck eval``

Checkpoints hold only tensors and plain Python values: they are read with
``torch.load(weights_only=True)`` and written to a temporary file that is then renamed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..core.errors import SepcheckError
from ..core.fileio import atomic_write, input_file, read_json_object, to_jsonable

CONFIG = "config.json"
LOG = "log.jsonl"
LATEST = "checkpoint_latest.pt"
FINAL = "checkpoint_final.pt"
EVAL = "eval.json"
RUN_FILES = (CONFIG, LOG, LATEST, FINAL, EVAL)
CHECKPOINT_FORMAT = "sepcheck.train.checkpoint/1"
#: config.json format written by this version; version 1 (method parameters as given, eps
#: and norm repeated inside "params") is still read (see :mod:`sepcheck.train.config`)
RUN_FORMAT = "sepcheck.train.run/2"
RUN_FORMATS = ("sepcheck.train.run/1", RUN_FORMAT)


class RunDir:
    """Paths of one run folder."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / CONFIG)
    log = property(lambda self: self.path / LOG)
    latest = property(lambda self: self.path / LATEST)
    final = property(lambda self: self.path / FINAL)
    eval = property(lambda self: self.path / EVAL)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def has_run_files(self) -> bool:
        return any((self.path / f).exists() for f in RUN_FILES)


def prepare_dir(path: str | os.PathLike, *, resume: bool, force: bool) -> RunDir:
    """Check that a run may be written to ``path``; with ``force`` remove the old run files.

    An existing run folder is never overwritten without ``resume`` or ``force``; a run that
    stopped before its first checkpoint (config.json and perhaps a torn log, nothing to
    resume or evaluate) is not a run: its files are removed and it starts again.
    """
    run = RunDir(path)
    if run.path.exists() and not run.path.is_dir():
        raise SepcheckError(f"--out {run.path} is a file: give a folder for the run")
    if run.has_run_files() and not (run.latest.exists() or run.final.exists() or run.eval.exists()):
        for name in (CONFIG, LOG):
            (run.path / name).unlink(missing_ok=True)
    if run.has_run_files() and not resume:
        if not force:
            raise SepcheckError(
                f"run folder {run.path} already holds a run: add --resume to continue it or "
                "--force to overwrite it"
            )
        for name in RUN_FILES:
            (run.path / name).unlink(missing_ok=True)
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepcheckError(f"cannot create run folder {run.path} ({exc.strerror})") from None
    if not os.access(run.path, os.W_OK):
        raise SepcheckError(f"cannot write to run folder {run.path}: it is not writable")
    return run


def write_json(path: Path, obj: Any) -> None:
    """Strict JSON (no NaN), written atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.exists():
        raise SepcheckError(f"{path} does not exist: {what} is missing")
    return read_json_object(path, what)


def read_config(run: RunDir) -> dict[str, Any]:
    """The run's config.json (a clear error when the folder is not a run folder)."""
    if not run.path.is_dir():
        raise SepcheckError(f"run folder {run.path} does not exist: give a folder written by `sepcheck train`")
    if not run.config.exists():
        raise SepcheckError(f"{run.path} is not a run folder (no {CONFIG}): give a folder written by `sepcheck train`")
    cfg = read_json(run.config, "run config")
    if cfg.get("format") not in RUN_FORMATS:
        raise SepcheckError(f"{run.config} is not a sepcheck run config (format {cfg.get('format')!r})")
    return cfg


def read_log(run: RunDir) -> list[dict[str, Any]]:
    """The per-epoch records; a torn last line (a crash while writing) is ignored."""
    if not run.log.exists():
        return []
    out = []
    for line in run.log.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def append_log(run: RunDir, record: dict[str, Any]) -> None:
    """Append one epoch record (one line, flushed to disk)."""
    line = json.dumps(to_jsonable(record), allow_nan=False)
    with open(run.log, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_log(run: RunDir, records: list[dict[str, Any]]) -> None:
    """Replace log.jsonl by ``records`` (on resume: the log stored in the checkpoint)."""
    text = "".join(json.dumps(to_jsonable(r), allow_nan=False) + "\n" for r in records)
    atomic_write(run.log, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, then rename."""
    state = {"format": CHECKPOINT_FORMAT, **state}
    if "config" in state:  # plain JSON types only: the file must load with weights_only=True
        state["config"] = json.loads(json.dumps(to_jsonable(state["config"]), allow_nan=False))
    atomic_write(path, lambda tmp: torch.save(state, tmp))


#: what each kind of checkpoint must hold: key -> type
_MODEL_KEYS: dict[str, type | tuple[type, ...]] = {"epoch": int, "arch": str, "model": dict}
_RESUME_KEYS: dict[str, type | tuple[type, ...]] = {**_MODEL_KEYS, "optimizer": dict, "schedule": dict,
                                                    "rng": dict, "log": list}
#: phrases of torch's own messages that say nothing to a user (its hints to file issues, ...)
_TORCH_NOISE = ("please file an issue", "weights_only", "github.com", "in pytorch", "torch.serialization",
                "re-running `torch.load`", "check the recommended steps")


def load_checkpoint(path: Path, *, resume: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` onto the CPU, checked for its keys and
    their types (``resume``: also the optimizer, schedule, RNG states and log); any failure is
    a one-line :class:`SepcheckError` (never torch's own multi-line text)."""
    input_file(path, "checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        useful = [ln for ln in lines if not any(w in ln.lower() for w in _TORCH_NOISE)]
        msg = next((ln for ln in lines if "Unpickler error" in ln), useful[0] if useful else type(exc).__name__)
        raise SepcheckError(f"checkpoint {path} is corrupted or not a sepcheck checkpoint ({msg[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SepcheckError(f"{path} is not a sepcheck checkpoint: give a run folder written by `sepcheck train`")
    for key, typ in (_RESUME_KEYS if resume else _MODEL_KEYS).items():
        value = state.get(key)
        if not isinstance(value, typ) or isinstance(value, bool):
            found = "missing" if key not in state else f"a {type(value).__name__}"
            raise SepcheckError(f"checkpoint {path}: {key!r} is {found}, not a {getattr(typ, '__name__', typ)}: "
                                "the file is damaged or hand-edited; use --force to start over")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items()):
        raise SepcheckError(f"checkpoint {path}: 'model' is not a state dict of tensors: the file is damaged")
    if state["epoch"] < 0:
        raise SepcheckError(f"checkpoint {path}: epoch {state['epoch']} is negative: the file is damaged")
    if resume:
        groups = state["optimizer"].get("param_groups")
        if not isinstance(groups, list) or not isinstance(state["optimizer"].get("state"), dict):
            raise SepcheckError(f"checkpoint {path}: the optimizer state has no parameter groups: the file is damaged")
        size = torch.get_rng_state().numel()
        gens = state["rng"].get("torch")
        if not isinstance(gens, list) or not all(isinstance(g, torch.Tensor) and g.dtype == torch.uint8
                                                 and g.numel() == size for g in gens):
            raise SepcheckError(f"checkpoint {path}: the saved random generator states are not torch CPU "
                                "generator states: the file is damaged; use --force to start over")
    return state


def model_checkpoint(run: RunDir) -> tuple[dict[str, Any], bool]:
    """The checkpoint to evaluate: the final one, else the latest (second value False: the run
    is unfinished)."""
    if run.final.exists():
        return load_checkpoint(run.final), True
    if run.latest.exists():
        return load_checkpoint(run.latest), False
    raise SepcheckError(
        f"run folder {run.path} has no checkpoint ({FINAL} or {LATEST}): train it first or "
        "resume it with `sepcheck train ... --resume`"
    )


__all__ = ["RUN_FORMAT", "RUN_FORMATS", "RunDir", "prepare_dir", "read_config", "read_log", "append_log", "write_log",
           "save_checkpoint", "load_checkpoint", "model_checkpoint", "write_json", "read_json"]
