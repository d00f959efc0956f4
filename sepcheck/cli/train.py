"""``sepcheck train METHOD --dataset NAME`` and ``sepcheck eval RUN_DIR...``: the paper's table
for the user's data set, with the separation bound next to each model."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import click

from ..core.errors import SepcheckError
from ..core.fileio import check_writable
from ..train.config import DEFAULT_LR, PARAMS, TrainConfig
from ._common import cli_cache, data_options, emit_json, fmt, json_option

METHOD_NAMES = ("natural", "gr", "llr", "at", "trades")


# Defaults and choices of the options that are TrainConfig fields or method parameters come
# from those dataclasses (sepcheck.train.config, which imports no torch): written once, there.
_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_CONFIG_TYPES = get_type_hints(TrainConfig)


def _literal_args(hint: Any) -> tuple[str, ...] | None:
    """The values of a ``Literal`` type (also inside ``Optional``); None for any other type."""
    if get_origin(hint) is Literal:
        return get_args(hint)
    for arg in get_args(hint):
        if get_origin(arg) is Literal:
            return get_args(arg)
    return None


def _config_option(*decls: str, choices: bool = True, **kwargs: Any) -> Callable[[Any], Any]:
    """``click.option`` for the TrainConfig field named by the flag: its default (shown, unless
    it is None or False) and, for a ``Literal`` field with ``choices``, ``click.Choice`` of its
    values. (``choices=False``: a free string, checked by :meth:`TrainConfig.validate`.)"""
    name = decls[0].split("/")[0].lstrip("-").replace("-", "_")
    default = _CONFIG_FIELDS[name].default
    values = _literal_args(_CONFIG_TYPES[name]) if choices else None
    if values is not None:
        kwargs["type"] = click.Choice(values)
    shown = default is not None and default is not False
    return click.option(*decls, default=default, show_default=shown, **kwargs)


def _param_fields(name: str, *methods: str) -> list[tuple[str, dataclasses.Field[Any]]]:
    return [(m, f) for m in methods for f in dataclasses.fields(PARAMS[m]) if f.name == name]


def _param_defaults(name: str, *methods: str) -> str:
    """The default of method parameter ``name`` for ``methods``: one value (``1``) if they all
    agree, else per method (``AT/TRADES 10, LLR 2``)."""
    groups: dict[Any, list[str]] = {}
    for m, f in _param_fields(name, *methods):
        groups.setdefault(f.default, []).append(m.upper())
    text = {v: f"{v:g}" if isinstance(v, float) else str(v) for v in groups}
    if len(groups) == 1:
        return text[next(iter(groups))]
    return ", ".join(f"{'/'.join(ms)} {text[v]}" for v, ms in groups.items())


def _param_choices(name: str, *methods: str) -> list[str]:
    """The ``Literal`` values of method parameter ``name`` (the same for all ``methods``)."""
    found = {get_args(f.metadata["choices"]) for _, f in _param_fields(name, *methods)}
    assert len(found) == 1, f"{name}: different choices per method"
    return list(found.pop())


def _choice_help(prefix: str, descriptions: dict[str, str], default: str) -> str:
    """``prefix`` and the choices' descriptions, the default's marked ``(default)``."""
    return prefix + " or ".join(d + (" (default)" if c == default else "") for c, d in descriptions.items())


def _default_out(dataset: str, method: str, beta: float | None, norm: str) -> str:
    name = Path(dataset).stem if Path(dataset).suffix else Path(dataset).name or "data"
    tag = method + (f"-b{beta:g}" if method == "trades" and beta is not None else "")
    return str(Path("runs") / f"{name}-{tag}-{norm}")


@click.command()
@click.argument("method")
@click.option("--dataset", required=True, help="Registered name, .npz/.h5 file (X, y, X_test, y_test) or IDX folder.")
@_config_option("--arch", help="mnist_cnn, wrn40_10[_drop20|_drop50], resnet50, tiny_cnn, mlp "
                "(default: from the input shape, printed).")
@_config_option("--norm", choices=False, help="Threat model: linf or l2.")
@_config_option("--eps", type=float, help="Attack radius (default: the data set's typical linf eps).")
@click.option("--beta", type=float, default=None,
              help=f"TRADES weight of the KL term (default {_param_defaults('beta', 'trades')}).")
@click.option("--lambda", "lam", type=float, default=None,
              help=f"GR penalty (default {_param_defaults('lam', 'gr')}) or LLR gamma weight "
              f"(default {_param_defaults('lam', 'llr')}).")
@click.option("--mu", type=float, default=None,
              help=f"LLR weight of |delta^T grad| (default {_param_defaults('mu', 'llr')}).")
@click.option("--h", type=float, default=None,
              help=f"GR finite-difference step (default {_param_defaults('h', 'gr')}, the paper's code).")
@click.option("--steps", type=int, default=None,
              help=f"Inner maximisation steps ({_param_defaults('steps', 'at', 'trades', 'llr')}).")
@click.option("--step-size", type=float, default=None, help="Inner step size (default 2 eps/steps; LLR eps/2).")
@click.option("--variant", default=None, type=click.Choice(_param_choices("variant", "gr", "llr")),
              help=_choice_help("GR/LLR: ", {"published": "the published method",
                                             "paper-code": "the loss of the paper's code"},
                                _param_defaults("variant", "gr", "llr")) + ".")
@click.option("--attack-mode", default=None, type=click.Choice(_param_choices("attack_mode", "at")),
              help=f"AT: the model's mode during the attack (default {_param_defaults('attack_mode', 'at')}; "
              "the paper's code: train).")
@_config_option("--preset",
                help="The official code's settings for the data set (optimizer, lr, reduction, batch, epochs, "
                "milestones, augmentation, arch); explicit flags override them. Printed and stored in config.json.")
@_config_option("--reduction", help="Loss over the batch: mean, or sum (the paper's code).")
@_config_option("--epochs", type=int)
@_config_option("--batch-size", type=int, help="Global batch size (split over torchrun processes).")
@_config_option("--lr", type=float,
                help="Learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ").")
@_config_option("--optimizer", choices=False, help="sgd (momentum, weight decay) or adam.")
@_config_option("--momentum", type=float)
@_config_option("--weight-decay", type=float)
@_config_option("--schedule", choices=False, help="step (x0.1 at 50% and 75%), cosine, constant.")
@_config_option("--augment", choices=False, help="auto (crop+flip for CIFAR-like images), none, crop-flip.")
@_config_option("--holdout", type=int, help="Use the last N training points as the test set.")
@_config_option("--seed", type=int)
@_config_option("--device", help="auto, cpu, cuda or cuda:N.")
@_config_option("--amp/--no-amp", help="Mixed precision on CUDA (bf16 where "
                "supported, else fp16; attacks and finite differences stay float32).")
@_config_option("--deterministic", is_flag=True, help="Deterministic torch algorithms and cuBLAS workspace, so a "
                "resumed CUDA run reproduces the uninterrupted one (slower; CPU runs reproduce anyway).")
@click.option("--out", default=None, help="Run folder (default runs/DATASET-METHOD-NORM).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--force", is_flag=True, help="Overwrite an existing run in --out.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
@data_options
@json_option
def train(method: str, dataset: str, arch: str | None, norm: str, eps: float | None, beta: float | None,
          lam: float | None, mu: float | None, h: float | None, steps: int | None, step_size: float | None,
          variant: str | None, attack_mode: str | None, preset: str | None, reduction: str, epochs: int, batch_size: int, lr: float | None, optimizer: str, momentum: float,
          weight_decay: float, schedule: str, augment: str, holdout: int | None, seed: int, device: str,
          amp: bool, deterministic: bool, out: str | None, resume: bool, force: bool, quiet: bool, data_dir: str | None,
          no_download: bool, no_verify: bool, as_json: bool) -> None:
    """Train a network with METHOD (natural, gr, llr, at, trades) into a run folder.

    The folder holds config.json, log.jsonl (one line per epoch) and the latest and final
    checkpoints; evaluate it with `sepcheck eval`. Multi-GPU: torchrun --nproc_per_node=N
    --no-python sepcheck train ...
    """
    from ..train.trainer import train as run_training

    method = method.strip().lower()
    if method not in METHOD_NAMES:
        raise SepcheckError(f"unknown method {method!r}: use one of {', '.join(METHOD_NAMES)}")
    if resume and force:
        raise SepcheckError("--resume and --force contradict each other: give one of them")
    cfg = TrainConfig.from_options(
        method, dataset, arch=arch, norm=norm, eps=eps, beta=beta, lam=lam, mu=mu, h=h, steps=steps,
        step_size=step_size, variant=variant, attack_mode=attack_mode, preset=preset, reduction=reduction,
        explicit=_explicit(), epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer.lower(),
        momentum=momentum, weight_decay=weight_decay, schedule=schedule.lower(), augment=augment.lower(),
        holdout=holdout, seed=seed, device=device, amp=amp, deterministic=deterministic, data_dir=data_dir,
        download=not no_download, verify=not no_verify)
    cfg.validate()
    out = out or _default_out(dataset, method, getattr(cfg.params, "beta", None), cfg.norm)
    try:
        result = run_training(cfg, out, resume=resume, force=force, progress=not quiet and not as_json)
    except KeyboardInterrupt:
        click.echo(f"interrupted: continue with the same command and --resume (run folder {out})", err=True)
        raise
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: only rank 0 reports
        return
    final = result.final
    summary: dict[str, Any] = {
        "run_dir": str(result.run_dir),
        "method": result.config["method"],
        "label": result.config["label"],
        "arch": result.config["arch"],
        "dataset": result.config["data"]["name"],
        "norm": result.config["norm"],
        "eps": result.config["eps"],
        "params": result.config["params"],
        "preset": result.config.get("preset"),
        "epochs": result.config["epochs"],
        "resumed_from_epoch": result.resumed_from,
        "final": final,
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        "notes": result.config["data"]["notes"],
    }
    if as_json:
        emit_json(summary)
        return
    click.echo(f"run        {summary['run_dir']}")
    click.echo(f"method     {summary['label']}  ({summary['arch']}, {summary['norm']} eps={fmt(summary['eps'])})")
    if final:
        test = f", test acc {fmt(final['test_acc'])}" if "test_acc" in final else ""
        click.echo(f"epoch {final['epoch']}    loss {fmt(final['loss'])}, train acc {fmt(final['train_acc'])}{test}")
    if summary["preset"]:
        p = summary["preset"]
        click.echo(f"preset     {p['name']} ({p['dataset']}): "
                   + ", ".join(f"{k}={v}" for k, v in p["settings"].items()))
    click.echo(f"time       {summary['wall_s']:.1f} s")
    click.echo(f"next       sepcheck eval {summary['run_dir']}")


def _explicit() -> tuple[str, ...]:
    """TrainConfig option names given on the command line (they override a preset)."""
    ctx = click.get_current_context()
    names = {"arch", "optimizer", "lr", "momentum", "reduction", "batch_size", "epochs", "augment",
             "weight_decay", "schedule"}
    return tuple(sorted(n for n in names if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE))


@click.command("eval")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--eps", type=float, default=None, help="Attack radius (default: each run's training eps).")
@click.option("--attack-steps", type=int, default=10, show_default=True, help="PGD steps.")
@click.option("--attack-step-size", type=float, default=None, help="PGD step size (default 2 eps / steps).")
@click.option("--restarts", type=int, default=1, show_default=True, help="PGD random restarts.")
@click.option("--lip-steps", type=int, default=10, show_default=True, help="Lipschitz-estimate ascent steps.")
@click.option("--lip-step-size", type=float, default=0.003, show_default=True, help="Lipschitz-estimate step size.")
@click.option("--lip-restarts", type=int, default=1, show_default=True,
              help="Lipschitz-estimate random starts per point (the paper: 1).")
@click.option("--lip-protocol", "lip_protocols", multiple=True, type=click.Choice(["ascent", "paper-code"]),
              default=("ascent",), show_default=True,
              help="Lipschitz estimate: ascent (the paper's formula, best iterate) or paper-code (the official "
              "code: descent on the ratio, final iterate); repeat for both columns.")
@click.option("--attack", "attacks", multiple=True, type=click.Choice(["pgd", "autoattack"]), default=("pgd",),
              show_default=True, help="Adversarial accuracy: pgd and/or autoattack (ART; extra [autoattack]); "
              "PGD is always reported.")
@click.option("--subset", type=int, default=None, help="Evaluate on N random test (and train) points (seed 0).")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--no-bound", is_flag=True, help="Skip the separation bound and the reference row.")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), default=None, help="Write the Markdown table.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Write the table as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="PNG: adversarial accuracy against the Lipschitz estimate.")
@data_options
@json_option
def evaluate(run_dirs: tuple[str, ...], eps: float | None, attack_steps: int, attack_step_size: float | None,
             restarts: int, lip_steps: int, lip_step_size: float, lip_restarts: int, lip_protocols: tuple[str, ...],
             attacks: tuple[str, ...], subset: int | None, batch_size: int, device: str,
             no_bound: bool, table_path: str | None, csv_path: str | None, plot_path: str | None,
             data_dir: str | None, no_download: bool, no_verify: bool, as_json: bool) -> None:
    """Evaluate trained runs: the paper's table (train acc, test acc, adv test acc, test
    lipschitz), the separation bound (separation, r, the theorem's per-class 1/r, and each
    model's lipschitz over the reference's) and the LipschitzNNClassifier as the reference row,
    its lipschitz measured by the same estimator."""
    from ..train.autoattack import AutoAttackSettings, require_art
    from ..train.evaluate import AttackSettings, LipschitzSettings, evaluate_runs
    from ..train.report import save_plot, to_csv, to_markdown, write_text

    if eps is not None and not eps > 0:
        raise SepcheckError(f"--eps {eps} is invalid: give an attack radius > 0")
    for name, v in (("--attack-steps", attack_steps), ("--restarts", restarts), ("--lip-steps", lip_steps), ("--lip-restarts", lip_restarts),
                    ("--batch-size", batch_size)):
        if v < 1:
            raise SepcheckError(f"{name} {v} is invalid: give an integer >= 1")
    if attack_step_size is not None and not attack_step_size > 0:
        raise SepcheckError(f"--attack-step-size {attack_step_size} is invalid: it must be > 0")
    if not lip_step_size > 0:
        raise SepcheckError(f"--lip-step-size {lip_step_size} is invalid: it must be > 0")
    paths = {k: check_writable(p, k) for k, p in (("--table", table_path), ("--csv", csv_path),
                                                   ("--plot", plot_path)) if p}
    attack = AttackSettings(steps=attack_steps, step_size=attack_step_size, restarts=restarts)
    lip = LipschitzSettings(steps=lip_steps, step_size=lip_step_size, restarts=lip_restarts,
                            protocols=tuple(dict.fromkeys(lip_protocols)))
    autoattack = AutoAttackSettings() if "autoattack" in attacks else None
    if autoattack is not None:
        require_art()  # fails fast, in one line, when the extra is missing
    t0 = time.perf_counter()
    summary = evaluate_runs(list(run_dirs), eps=eps, subset=subset, attack=attack, lip=lip, bound=not no_bound,
                           device=device, batch_size=batch_size,
                           data_options={"data_dir": data_dir, "download": not no_download, "verify": not no_verify}
                           if data_dir or no_download or no_verify else None,
                           echo=None if as_json else (lambda s: click.echo(s, err=True)),
                           cache=cli_cache(False), autoattack=autoattack)
    summary["wall_s"] = time.perf_counter() - t0
    if "--table" in paths:
        write_text(paths["--table"], to_markdown(summary))
        summary["table"] = str(paths["--table"])
    if "--csv" in paths:
        write_text(paths["--csv"], to_csv(summary))
        summary["csv"] = str(paths["--csv"])
    if "--plot" in paths:
        save_plot(summary, paths["--plot"])
        summary["plot"] = str(paths["--plot"])
    if as_json:
        emit_json(summary)
        return
    click.echo(f"attack     {summary['settings']['description']}")
    if subset:
        click.echo(f"subset     {subset} random test and train points (seed 0)")
    click.echo("")
    click.echo(to_markdown(summary).rstrip())
    for key in ("table", "csv", "plot"):
        if key in summary:
            click.echo(f"wrote      {summary[key]}")
