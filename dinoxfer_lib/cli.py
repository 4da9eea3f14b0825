"""The ``dinoxfer`` command: run the notebooks, build the book, fetch data, print the config and the environment,
check a backbone's channel order.

Errors a user can act on (a bad profile key, a missing file, a failed download, a failing notebook) print one line
and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dinoxfer_lib.config import DEFAULT_PROFILE, available_profiles
from dinoxfer_lib.errors import DinoxferError


def _cmd_run(args: argparse.Namespace) -> None:
    from dinoxfer_lib.runner import parse_overrides, run_notebooks

    started = time.perf_counter()
    results = run_notebooks(
        profile=args.profile,
        notebook_dir=args.notebooks,
        runs_root=args.runs,
        only=args.only or (),
        force=args.force,
        overrides=parse_overrides(args.set or ()),
    )
    reused = sum(len(r.reused) for r in results)
    computed = sum(len(r.computed) for r in results)
    print(
        f"done: {len(results)} notebook(s) in {time.perf_counter() - started:.1f} s; "
        f"{reused} stage(s) reused, {computed} computed; executed notebooks in "
        f"{Path(args.runs).resolve() / Path(args.profile).stem / 'notebooks'}"
    )


def _cmd_notebooks(args: argparse.Namespace) -> None:
    from dinoxfer_lib.notebooks import pair_notebooks

    for path in pair_notebooks(args.notebooks):
        print(path)


def _cmd_config(args: argparse.Namespace) -> None:
    from dinoxfer_lib.config import config_yaml, load_config
    from dinoxfer_lib.runner import parse_overrides

    overrides = parse_overrides(args.set or ())
    print(config_yaml(load_config(args.profile, overrides), source=args.profile, overrides=overrides), end="")


def _cmd_verify(args: argparse.Namespace) -> None:
    from dinoxfer_lib.config import load_config
    from dinoxfer_lib.errors import StoreError
    from dinoxfer_lib.store import ArtifactStore

    store = ArtifactStore(args.runs, load_config(args.profile).profile)
    report = store.verify()
    for stage, damaged in report.items():
        print(f"{stage}: {'; '.join(damaged) if damaged else 'ok'}")
    bad = [stage for stage, damaged in report.items() if damaged]
    if bad:
        raise StoreError(f"{len(bad)} of {len(report)} stage(s) under {store.root} do not match their provenance "
                         f"(first: {bad[0]}); the next run recomputes them")
    print(f"{len(report)} stage(s) under {store.root} match the sha256 in their provenance")


def _cmd_book(args: argparse.Namespace) -> None:
    from dinoxfer_lib.book import build_book

    index = build_book(profile=args.profile, runs_root=args.runs, repo_root=args.repo, output_dir=args.output)
    print(f"book built from profile {args.profile!r}: {index}")


def _cmd_info(args: argparse.Namespace) -> None:
    from dinoxfer_lib.provenance import commit_label, device_description, git_state, package_versions

    state = git_state()
    print(f"device: {device_description()}")
    print(f"git: {commit_label(state, digits=40)}")
    print(f"source sha256: {state['source_sha256']}")
    print(f"profiles: {', '.join(available_profiles())}")
    for name, version in package_versions().items():
        print(f"{name}: {version}")


def _cmd_fetch(args: argparse.Namespace) -> None:
    from dinoxfer_lib.data.manifests import fetch, list_manifests

    if args.list or not args.name:
        for name in list_manifests():
            print(name)
        return
    for path in fetch(args.name, cache_dir=args.cache):
        print(path)


def _cmd_bench(args: argparse.Namespace) -> None:
    import json

    from dinoxfer_lib.bench import BENCHMARKS, ratio_lines, run_benchmarks
    from dinoxfer_lib.devices import resolve_device
    from dinoxfer_lib.embed import compile_mode
    from dinoxfer_lib.errors import ConfigError

    device = resolve_device(args.device)
    compile_mode(args.compile or False)  # an unknown mode fails here, before minutes of benchmarks
    if args.record and (device.type != "cuda" or args.size != "paper"):
        raise ConfigError(f"--record keeps GPU figures for the book: expected a CUDA device (this run: {device}) "
                          f"and --size paper (got {args.size})")
    if args.record and args.record_dir is None:
        from dinoxfer_lib.bench.records import RECORD_DIR

        if not RECORD_DIR.parent.is_dir():
            raise ConfigError(f"--record: this installation has no book folder ({RECORD_DIR.parent}): "
                              "give --record-dir")
        args.record_dir = RECORD_DIR
    names = args.only or list(BENCHMARKS)
    results = run_benchmarks(names, size=args.size, device=args.device, compile_mode=args.compile)
    for result in results:
        print("\n".join(ratio_lines(result)))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
        print(f"results written to {args.out}")
    if args.record:
        from dinoxfer_lib.bench.records import make_record, write_record
        from dinoxfer_lib.bench.variants import model_variants

        variants = model_variants(device=str(device)) if "embedding" in names else None  # what limits the extractor
        path = write_record(make_record(results, variants, device), args.record_dir)
        print(f"recorded for the performance chapter: {path}")


def _cmd_frontier(args: argparse.Namespace) -> None:
    from dinoxfer_lib.bench.frontier import (FRONTIER_DIR, default_epochs, extend_frontier_record, frontier_table,
                                             frontier_targets_table, make_frontier_record, measure_frontier,
                                             read_extendable, write_frontier_record)
    from dinoxfer_lib.config import load_config
    from dinoxfer_lib.errors import ConfigError
    from dinoxfer_lib.runner import parse_overrides

    overrides = parse_overrides(args.set or ())
    config = load_config(args.profile, overrides)
    epochs = args.epochs or default_epochs(config.dino.epochs)
    if sorted(set(epochs)) != epochs or epochs[0] < 1:
        raise ConfigError(f"--epochs {' '.join(map(str, epochs))}: expected distinct whole numbers >= 1 in "
                          "increasing order, e.g. 4 8 16")
    folder = args.record_dir or FRONTIER_DIR
    earlier = (read_extendable(args.extend, profile=args.profile, config=config, overrides=overrides, epochs=epochs)
               if args.extend else None)
    points = measure_frontier(args.profile, overrides, epochs=epochs, runs_root=args.runs)
    record = make_frontier_record(points, profile=args.profile, config=config, overrides=overrides)
    if earlier:
        record = extend_frontier_record(earlier, record)
    print(frontier_table(record).to_string())
    print(frontier_targets_table(record).T.to_string())
    print(f"recorded for the classifier chapter: {write_frontier_record(record, folder)}")


def _cmd_channels_check(args: argparse.Namespace) -> None:
    from dinoxfer_lib.data.classes import HPA_CHANNELS
    from dinoxfer_lib.data.readers import read_hpa_kaggle
    from dinoxfer_lib.errors import ConfigError
    from dinoxfer_lib.models.backbones import pretrained_weights
    from dinoxfer_lib.models.checkpoints import build_backbone
    from dinoxfer_lib.models.slot_order import check_slot_orders

    meta = pretrained_weights(args.weights)
    if sorted(meta.slots) != sorted(HPA_CHANNELS):
        raise ConfigError(f"--weights {args.weights}: its slots ({', '.join(meta.slots)}) are not the HPA stains "
                          f"({', '.join(HPA_CHANNELS)}); the check compares orders of those on HPA images")
    dataset = read_hpa_kaggle(args.data, image_size=args.img_size, max_images=args.n_images, seed=args.seed)
    backbone, _ = build_backbone(args.weights, img_size=args.img_size, cache_dir=args.cache)
    ranking = check_slot_orders(dataset, backbone, weights=args.weights, per_image_zscore=meta.per_image_zscore,
                                k=args.k, batch_size=args.batch_size, img_size=args.img_size, device=args.device,
                                seed=args.seed, data=str(Path(args.data).resolve()))
    out = ranking.save(args.out or Path(f"channels_check_{args.weights}.json"))
    print(ranking.table())
    if not ranking.decisive:
        print(f"not decisive: the best order is ahead in only {ranking.wins:.0%} of the resamples; check more images "
              f"(--n-images) before recording it")
    print(f"ranking saved to {out}; record the best order in the manifest with:\n  dinoxfer channels record {out}")


def _cmd_channels_record(args: argparse.Namespace) -> None:
    from dinoxfer_lib.models.slot_order import SlotOrderRanking, record_slot_order, slot_order

    ranking = SlotOrderRanking.load(args.ranking)
    path = record_slot_order(ranking, manifest_dir=args.manifests)
    print(f"recorded in {path}: {slot_order(ranking.weights, manifest_dir=args.manifests).sentence()}")


def _cmd_channels_show(args: argparse.Namespace) -> None:
    from dinoxfer_lib.models.slot_order import slot_order

    print(slot_order(args.weights, manifest_dir=args.manifests).sentence())


# The `run` option that sets each papermill parameter of the notebooks.
_PARAMETER_OPTIONS = {"profile": "--profile", "overrides": "--set KEY=VALUE ...", "runs_root": "--runs",
                      "force": "--force"}


def _parameters_help(notebook_dir: Path) -> str:
    """The papermill parameters every notebook accepts, read from their parameters cells, for ``run --help``."""
    from dinoxfer_lib.errors import NotebookError
    from dinoxfer_lib.notebooks import common_parameters
    from dinoxfer_lib.runner import discover_notebooks

    try:
        parameters = common_parameters(discover_notebooks(notebook_dir))
    except NotebookError as exc:
        return f"papermill parameters: not listed ({exc})"
    if not parameters:
        return f"papermill parameters: the notebooks in {notebook_dir}/ share none"
    width = max(len(f"{name} = {default!r}") for name, default in parameters.items())
    lines = [f"papermill parameters of every notebook in {notebook_dir}/ (name = default; the option that sets it):"]
    lines += [f"  {f'{name} = {default!r}':<{width}}  {_PARAMETER_OPTIONS.get(name, '(papermill only)')}"
              for name, default in parameters.items()]
    lines += ["plain papermill on a paired notebook (`dinoxfer notebooks` writes the pairs; from notebooks/, so that",
              "runs_root = '../runs' is the repository's runs/):",
              "  cd notebooks && papermill 04_classifier.ipynb out.ipynb -p profile smoke -y 'overrides: {seed: 1}'"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dinoxfer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_profile(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(available_profiles())} "
                       "or a YAML file of the same shape (default: %(default)s)")
        p.add_argument("--runs", type=Path, default=Path("runs"), help="artifact store root (default: %(default)s)")

    run = sub.add_parser("run", help="execute the notebooks with papermill, in order",
                         epilog=_parameters_help(Path("notebooks")),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile(run)
    run.add_argument("--only", nargs="+", metavar="NAME", help="notebooks to run, e.g. 01_datasets or 01")
    run.add_argument("--force", action="store_true", help="recompute stages even when they are unchanged")
    run.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="override a config value, e.g. seed=1")
    run.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="notebook folder (default: %(default)s)")
    run.set_defaults(func=_cmd_run)

    notebooks = sub.add_parser("notebooks", help="write or update the paired .ipynb of every notebook (jupytext "
                               "--sync), for JupyterLab and plain papermill")
    notebooks.add_argument("--notebooks", type=Path, default=Path("notebooks"),
                           help="notebook folder (default: %(default)s)")
    notebooks.set_defaults(func=_cmd_notebooks)

    config = sub.add_parser("config", help="print the fully resolved config as YAML (a profile you can copy and edit)")
    config.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(available_profiles())} "
                        "or a YAML file of the same shape (default: %(default)s)")
    config.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="override a config value, e.g. seed=1")
    config.set_defaults(func=_cmd_config)

    verify = sub.add_parser("verify", help="check every stage of a profile's store against its recorded sha256")
    add_profile(verify)
    verify.set_defaults(func=_cmd_verify)

    book = sub.add_parser("book", help="build the HTML book from the executed notebooks of a profile")
    add_profile(book)
    book.add_argument("--repo", type=Path, default=Path("."), help="folder with _config.yml, _toc.yml, book/")
    book.add_argument("--output", type=Path, default=Path("."), help="the HTML goes to OUTPUT/_build/html")
    book.set_defaults(func=_cmd_book)

    info = sub.add_parser("info", help="print the device, git commit and package versions")
    info.set_defaults(func=_cmd_info)

    fetch = sub.add_parser("fetch", help="download a dataset or checkpoint recorded in data_manifests/")
    fetch.add_argument("name", nargs="?", help="manifest name; omit to list them")
    fetch.add_argument("--list", action="store_true", help="list the manifests")
    fetch.add_argument("--cache", type=Path, default=None, help="download folder (default: the user cache)")
    fetch.set_defaults(func=_cmd_fetch)
    bench = sub.add_parser("bench", help="time the hot paths against reference implementations (ratios)")
    bench.add_argument("--only", nargs="+", metavar="NAME", help="benchmarks to run (default: all)")
    bench.add_argument("--size", choices=("small", "demo", "paper"), default="demo",
                       help="problem size: small (seconds), demo (CPU-sized), paper (ViT-B/8 at 224 px; GPU)")
    bench.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    bench.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    bench.add_argument("--compile", metavar="MODE", default=None,
                       help="also time the embedding extractor compiled in this torch.compile mode: default or "
                            "max-autotune-no-cudagraphs (at --size paper it is timed in default mode unless given)")
    bench.add_argument("--record", action="store_true",
                       help="GPU, paper size: keep the figures for the book's performance chapter (in --record-dir), "
                            "with the backbone variants when the embedding benchmark runs")
    bench.add_argument("--record-dir", type=Path, default=None,
                       help="where --record writes (default: book/performance/records/ of this checkout)")
    bench.set_defaults(func=_cmd_bench)

    frontier = sub.add_parser("frontier", help="train the backbones behind chapter 04's paired targets for several "
                              "DINO epoch counts and record each target, on both splits, against minutes of "
                              "training (chapter 04 shows it)")
    add_profile(frontier)
    frontier.add_argument("--epochs", nargs="+", type=int, default=None, metavar="E",
                          help="DINO epoch counts, increasing (default: a quarter, half, all and twice the profile's)")
    frontier.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="override a config value, e.g. seed=1")
    frontier.add_argument("--record-dir", type=Path, default=None,
                          help="where the record goes (default: book/performance/frontier/ of this checkout)")
    frontier.add_argument("--extend", type=Path, default=None, metavar="RECORD",
                          help="a frontier record of the same profile and recipe: measure only --epochs not in it and "
                               "write a new record holding both (RECORD itself is kept)")
    frontier.set_defaults(func=_cmd_frontier)

    channels = sub.add_parser("channels", help="which input slot of a published backbone holds which stain")
    channels_sub = channels.add_subparsers(dest="channels_command", required=True)
    check = channels_sub.add_parser(
        "check", help="embed a labelled HPA sample under each candidate slot order and rank the orders by k-NN "
        "macro F1")
    check.add_argument("--weights", default="dino4cells_hpa_fov", help="registered weights (default: %(default)s)")
    check.add_argument("--data", required=True, type=Path, help="an HPA Kaggle folder (train.csv, train/)")
    check.add_argument("--n-images", type=int, default=2000, help="labelled images sampled (default: %(default)s)")
    check.add_argument("--k", type=int, default=10, help="neighbours of the k-NN probe (default: %(default)s)")
    check.add_argument("--img-size", type=int, default=224, help="side the images are read and embedded at "
                       "(default: %(default)s, the paper's)")
    check.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: %(default)s)")
    check.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    check.add_argument("--seed", type=int, default=0, help="seed of the sample and the bootstrap")
    check.add_argument("--cache", type=Path, default=None, help="where the weights were fetched (default: the "
                       "user cache)")
    check.add_argument("--out", type=Path, default=None, help="where to save the ranking (default: "
                       "channels_check_<weights>.json here)")
    check.set_defaults(func=_cmd_channels_check)
    record = channels_sub.add_parser("record", help="write the best order of a saved ranking into the weights' "
                                     "manifest (data_manifests/<name>.yaml), where the backbone loader reads it")
    record.add_argument("ranking", type=Path, help="the JSON file `dinoxfer channels check` saved")
    record.add_argument("--manifests", type=Path, default=None, help="manifest folder (default: data_manifests/)")
    record.set_defaults(func=_cmd_channels_record)
    show = channels_sub.add_parser("show", help="the slot order in force for registered weights, and whether it "
                                   "was checked")
    show.add_argument("--weights", default="dino4cells_hpa_fov", help="registered weights (default: %(default)s)")
    show.add_argument("--manifests", type=Path, default=None, help="manifest folder (default: data_manifests/)")
    show.set_defaults(func=_cmd_channels_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DinoxferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
