"""Command line: ``pdae-sc demo | train | predict``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence

__all__ = ["main", "run_demo"]


def _quiet() -> None:
    """Keep the terminal readable: no Lightning banners or known-harmless warnings."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*IterableDataset.*")
    warnings.filterwarnings("ignore", message=".*logging interval.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def run_demo(
    out: str = "demo_output",
    *,
    seed: int = 0,
    max_epochs: int | None = None,
    n_holdout: int = 10,
    progress: bool = True,
):
    """Simulate, hold out doubles, train the PDAE, predict them and score against baselines.

    Parameters
    ----------
    out
        Output directory; receives ``demo_predictions.h5ad``, ``demo_metrics.csv``,
        ``demo_summary.md`` and ``demo.png``.
    seed
        Seed of the simulation, the split, training and sampling.
    max_epochs
        Training epochs (default: the model's default).
    n_holdout
        Number of double perturbations held out.
    progress
        Show the training progress bar.

    Returns
    -------
    ``(summary, metrics)``: mean ± sd of each metric per method, and the per-condition table.
    """
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    import scvi

    import pdae_sc as pdae

    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    adata = pdae.data.simulate(
        n_perturbations=10, n_genes=100, n_cells_per_condition=100, basal="laplace", seed=seed
    )
    split = pdae.data.split_perturbations(adata, holdout="doubles", n_holdout=n_holdout, seed=seed)
    train, test = adata[split == "train"].copy(), adata[split == "test"].copy()
    targets = sorted(test.obs["perturbation"].unique().tolist())
    print(
        f"Simulated {adata.n_obs} cells x {adata.n_vars} genes, "
        f"{adata.obs['perturbation'].nunique()} conditions; held out {len(targets)} doubles."
    )

    scvi.settings.seed = seed
    pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(train)
    t1 = time.time()
    model.train(max_epochs=max_epochs, enable_progress_bar=progress)
    train_secs = time.time() - t1
    # one protocol for every method: as many distinct cells as the smallest pool (the
    # control cells), each drawn once, so that no score counts a cell twice
    n_cells = int((train.obs["perturbation"] == "ctrl").sum())
    # the model's default prediction (the method chosen on held-out training conditions)
    preds = {"pdae": model.predict(targets, n_cells=n_cells, seed=seed)}
    chosen = model.prediction_method_
    if chosen != "pdae":
        preds["pdae_network"] = model.predict(targets, n_cells=n_cells, seed=seed, method="pdae")
    for name, pred in preds.items():
        pred.uns["pdae"] = {**pred.uns["pdae"], "method": name}
    for method in ("control", "pooled", "additive", "linear", "mean_response"):
        preds[method] = pdae.tl.predict_baseline(
            train, targets, method=method, n_cells=n_cells, seed=seed
        )
    oracle = pdae.tl.predict_baseline(
        train, targets, method="oracle_half", adata_true=test, seed=seed
    )
    reference = test[oracle.uns["pdae"]["oracle_reference_cells"]]
    tables = [pdae.tl.evaluate(p, test, adata_control=train, seed=seed) for p in preds.values()]
    tables.append(pdae.tl.evaluate(oracle, reference, adata_control=train, seed=seed))
    metrics = pd.concat(tables, ignore_index=True)
    cols = ["energy_distance", "mmd", "mean_l2", "pearson_delta"]
    grouped = metrics.groupby("method", sort=False)[cols]
    summary = grouped.mean().round(4).astype(str) + " ± " + grouped.std().round(4).astype(str)
    simple = ["control", "pooled", "additive", "linear", "mean_response"]
    best = grouped.mean()["energy_distance"].loc[simple].idxmin()
    gap = pdae.tl.gap_closed(metrics, reference=best).set_index("method")["gap_closed"]
    summary[f"gap closed (vs {best})"] = gap.round(2).astype(str)
    summary = summary.loc[grouped.mean()["energy_distance"].sort_values().index]

    metrics.to_csv(os.path.join(out, "demo_metrics.csv"), index=False)
    with open(os.path.join(out, "demo_summary.md"), "w") as fh:
        fh.write(summary.to_markdown() if _has_tabulate() else summary.to_string())
        fh.write("\n")
    combined = pdae.tl.combine_predictions(preds["pdae"], test)
    combined.uns["pdae_extrapolation"] = preds["pdae"].uns["pdae"]["extrapolation"]
    combined.write_h5ad(os.path.join(out, "demo_predictions.h5ad"))
    _demo_figure(metrics, test, preds, targets[0], os.path.join(out, "demo.png"))

    if chosen == "pdae":
        why = "no simple baseline was clearly closer than its own network"
        how = "its own network"
    else:
        why = f"the {chosen} baseline was clearly closer than its own network"
        how = f"the {chosen} baseline"
    print(
        f"\nTrained the PDAE for {train_secs:.1f} s. On the training conditions it held out, "
        f"{why}, so its predictions (pdae) use {how}"
        + ("" if chosen == "pdae" else "; pdae_network: the network's own cells")
        + ". Held-out doubles, mean ± sd over "
        f"{len(targets)} conditions (lower energy distance is better); every method "
        f"predicts {n_cells} distinct cells per double. Gap closed: 1 at the noise floor "
        f"(oracle_half), 0 at the best simple baseline ({best}), negative when worse:\n"
    )
    print(summary.to_string())
    print(
        f"\nWrote {out}/demo_predictions.h5ad, demo_metrics.csv, demo_summary.md, demo.png "
        f"({time.time() - t0:.0f} s in all)."
    )
    return summary, metrics


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _demo_figure(metrics, test, preds, condition, path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    order = metrics.groupby("method")["energy_distance"].mean().sort_values()
    axes[0].barh(order.index, order.to_numpy(), color="tab:blue")
    axes[0].set_xlabel("energy distance to held-out cells (mean over doubles)")
    axes[0].invert_yaxis()
    obs = np.asarray(test[test.obs["perturbation"] == condition].X)
    mean = obs.mean(0)
    _, _, vt = np.linalg.svd(obs - mean, full_matrices=False)
    for name, x, colour in [
        ("additive", _rows(preds["additive"], condition), "tab:green"),
        ("pdae", _rows(preds["pdae"], condition), "tab:red"),
        ("observed", obs, "black"),
    ]:
        pc = (x - mean) @ vt[:2].T
        axes[1].scatter(pc[:, 0], pc[:, 1], s=5, alpha=0.4, label=name, color=colour)
    axes[1].set_title(f"held-out {condition}: PCA of observed cells")
    axes[1].set_xlabel("PC1")
    axes[1].set_ylabel("PC2")
    axes[1].legend(markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rows(adata, condition):
    import numpy as np

    return np.asarray(adata[adata.obs["perturbation"] == condition].X)


_INPUT_SUFFIXES = (".h5ad", ".h5mu")


def _check_input(path: str, what: str = "input") -> None:
    """An existing .h5ad/.h5mu file, else a one-line error."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"No {what} file at {path!r}.")
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a directory; give an .h5ad or .h5mu file.")
    if not str(path).endswith(_INPUT_SUFFIXES):
        raise ValueError(
            f"{what} {path!r} is not an .h5ad or .h5mu file; convert it first, e.g. "
            "anndata.read_csv(path).write_h5ad('data.h5ad') (cells as rows, and the labels "
            "in obs)."
        )


def _read(path: str, reader):
    """``reader(path)``, with an unreadable file as a one-line ``ValueError``."""
    try:
        return reader(path)
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(
            f"Cannot read {path!r} ({type(err).__name__}: {str(err)[:120]}); is it a valid "
            "AnnData/MuData file?"
        ) from err


#: Who wrote a prediction file (``uns`` mark): ``--overwrite`` replaces only such files.
_PREDICT_WRITER = "pdae-sc predict"


def _inside(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or lies under it (links resolved)."""
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([path, directory]) == directory


def _check_out_file(args) -> None:
    """``--out`` of predict: a new file, or (``--overwrite``) an earlier prediction.

    Never a file of the model directory (its weights or training data), never the
    ``--adata`` or ``--new-cells`` input, never through a link.
    """
    from pdae_sc._files import check_writable_file

    if _inside(args.out, args.model):
        raise ValueError(
            f"--out {args.out!r} is inside the model directory {args.model!r}, which holds "
            "only what pdae-sc train saved (the weights and the training data); write the "
            "predictions elsewhere, e.g. --out predictions.h5ad."
        )
    for flag, given in (("--adata", args.adata), ("--new-cells", args.new_cells)):
        if given is not None and os.path.exists(args.out) and os.path.exists(given):
            if os.path.samefile(args.out, given):
                raise ValueError(
                    f"--out {args.out!r} is the {flag} input; write the predictions to "
                    "another file."
                )
    check_writable_file(args.out, overwrite=args.overwrite, writer=_PREDICT_WRITER, arg="--out")


def _setup(args):
    """Read ``args.input`` (.h5ad or .h5mu) and register it; return what ``PDAE`` takes."""
    import pdae_sc as pdae

    is_mudata = str(args.input).endswith(".h5mu")
    if args.guide_modality is not None and not is_mudata:
        raise ValueError(
            f"--guide-modality needs a MuData (.h5mu) input, got {args.input!r}; for an .h5ad "
            "give the label column with --perturbation-key."
        )
    if args.guide_modality is not None and args.perturbation_key is not None:
        raise ValueError(
            "Give --perturbation-key or --guide-modality, not both: the labels come from a "
            "column or from guide calling."
        )
    common = {
        "control_group": args.control_group,
        "delimiter": args.delimiter,
        "dosage_key": args.dosage_key,
        "layer": args.layer,
        "counts_layer": args.counts_layer,
        "context_keys": args.context_keys,
    }
    key = args.perturbation_key or "perturbation"
    if is_mudata:
        import mudata as md

        if args.guide_modality is not None:
            labels = {"guide_modality": args.guide_modality, "min_counts": args.min_counts}
        else:
            labels = {"perturbation_key": key}
        mdata = _read(args.input, md.read_h5mu)
        pdae.model.PDAE.setup_mudata(mdata, rna=args.rna, **labels, **common)
        return mdata
    import anndata as ad

    adata = _read(args.input, ad.read_h5ad)
    pdae.model.PDAE.setup_anndata(adata, key, **common)
    return adata


def _cmd_train(args) -> None:
    import scvi

    import pdae_sc as pdae
    from pdae_sc.model._persistence import check_overwritable

    _check_input(args.input)
    if os.path.lexists(args.out):  # refuse before training, not after
        if not args.overwrite:
            raise FileExistsError(
                f"--out {args.out!r} already exists; pass --overwrite to replace a saved model "
                "or choose another directory."
            )
        check_overwritable(args.out)
    data = _setup(args)
    scvi.settings.seed = args.seed
    model = pdae.model.PDAE(data)
    model.train(max_epochs=args.max_epochs, accelerator=args.accelerator)
    model.save(args.out, overwrite=args.overwrite, save_anndata=True)
    print(f"Saved the model (with its training data) to {args.out}")


def _cmd_predict(args) -> None:
    import anndata as ad

    import pdae_sc as pdae
    from pdae_sc._files import write_h5ad

    _check_out_file(args)
    adata = None
    if args.adata is not None:
        _check_input(args.adata, "--adata")
        adata = _read(args.adata, ad.read_h5ad)
    new_cells = None
    if args.new_cells is not None:
        _check_input(args.new_cells, "--new-cells")
        new_cells = _read(args.new_cells, ad.read_h5ad)
    model = pdae.model.PDAE.load(args.model, adata)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    pred = model.predict(
        conditions,
        adata=new_cells,
        n_cells=args.n_cells,
        source=args.source,
        context=args.context,
        seed=args.seed,
        scale=args.scale,
    )
    write_h5ad(pred, args.out, overwrite=args.overwrite, writer=_PREDICT_WRITER, arg="--out")
    moved = "" if new_cells is None else f" (moved from the cells of {args.new_cells})"
    print(f"Wrote {pred.n_obs} predicted cells for {conditions}{moved} to {args.out}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pdae-sc", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="simulate, train, predict held-out doubles, score baselines")
    d.add_argument("--out", default="demo_output", help="output directory")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--max-epochs", type=int, default=None, help="default: the model's rule")
    d.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t = sub.add_parser(
        "train", help="train on an .h5ad or .h5mu file and save the model directory"
    )
    t.add_argument("input", help="log-normalised cells: .h5ad, or .h5mu (see --rna)")
    t.add_argument("--out", required=True, help="model directory to write")
    t.add_argument(
        "--perturbation-key", default=None, help="obs column of labels (default: perturbation)"
    )
    t.add_argument("--control-group", default="ctrl", help="label of the control cells")
    t.add_argument("--delimiter", default="+", help="separator of combined perturbations")
    t.add_argument("--dosage-key", default=None, help="obs column of doses")
    t.add_argument("--layer", default=None, help="layer with the expression (default: X)")
    t.add_argument(
        "--counts-layer", default=None, help="layer with raw counts (for predict --scale counts)"
    )
    t.add_argument("--context-keys", nargs="*", default=None, help="obs columns of contexts")
    t.add_argument("--rna", default="rna", help=".h5mu: the expression modality")
    t.add_argument(
        "--guide-modality", default=None, help=".h5mu: call labels from this guide-UMI modality"
    )
    t.add_argument(
        "--min-counts", type=float, default=5, help="UMIs for a guide to count (default 5)"
    )
    t.add_argument("--max-epochs", type=int, default=None, help="default: the model's rule")
    t.add_argument("--accelerator", default="auto", help="auto (GPU if any), cpu, gpu, ...")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    r = sub.add_parser("predict", help="predict conditions with a saved model into an .h5ad")
    r.add_argument("model", help="model directory written by pdae-sc train")
    r.add_argument("--conditions", required=True, help="comma-separated, e.g. 'A+B,C'")
    r.add_argument("--out", required=True, help=".h5ad file to write")
    r.add_argument("--n-cells", type=int, default=None, help="cells per condition")
    r.add_argument(
        "--source",
        default=None,
        help="source cells: all, the control or a label (default: the model's default_source_)",
    )
    r.add_argument(
        "--adata", default=None, help=".h5ad with the training genes, if the model has none"
    )
    r.add_argument(
        "--overwrite", action="store_true", help="replace an --out file written by predict"
    )
    r.add_argument(
        "--new-cells",
        default=None,
        help=".h5ad of cells the model never saw (e.g. a new donor's control cells) to move "
        "instead of the registered ones, without retraining",
    )
    r.add_argument("--context", default=None, help="predict in this context")
    r.add_argument(
        "--scale",
        choices=["log1p", "counts"],
        default="log1p",
        help="counts: also layers['counts'] (needs --counts-layer at training)",
    )
    r.add_argument("--seed", type=int, default=0)
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that a user's input or machine causes: one line and exit status 2.

    Besides bad arguments and files: training that diverges (``NonFiniteLossError``, a
    ``FloatingPointError``, e.g. on badly scaled data) and an accelerator the machine lacks
    (Lightning's ``MisconfigurationException``, e.g. ``--accelerator gpu`` without a GPU).
    """
    errors: tuple[type[BaseException], ...] = (
        KeyError,
        ValueError,
        TypeError,
        OSError,
        FloatingPointError,
    )
    if "lightning" in sys.modules:  # only raised once training or loading has started
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        errors += (MisconfigurationException,)
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pdae-sc`` command."""
    args = _parser().parse_args(argv)
    _quiet()
    try:
        if args.command == "demo":
            run_demo(
                args.out, seed=args.seed, max_epochs=args.max_epochs, progress=not args.no_progress
            )
        elif args.command == "train":
            _cmd_train(args)
        else:
            _cmd_predict(args)
    except _user_errors() as err:  # user errors; bugs raise
        message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        print(f"pdae-sc {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
