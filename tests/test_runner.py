"""The runner executes jupytext notebooks with papermill, injects parameters, and stops clearly on a failure."""

import json
import os

import nbformat
import pytest

from dinoxfer_lib.cli import main
from dinoxfer_lib.errors import ConfigError, NotebookError
from dinoxfer_lib.runner import discover_notebooks, parse_overrides, run_notebooks, select_notebooks

PARAMS = '# %% tags=["parameters"]\nprofile = "demo"\noverrides = {}\nruns_root = "../runs"\nforce = False\n\n'


def write_notebook(folder, name, body):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(PARAMS + body)


def test_parameters_are_injected_and_output_kept(tmp_path):
    nb_dir = tmp_path / "nbs"
    write_notebook(nb_dir, "01_echo.py", "# %%\nimport os\nprint(profile, overrides['seed'], force, "
                                         "os.environ.get('TQDM_DISABLE'))\n")
    stale = tmp_path / "runs" / "smoke" / ".scratch" / "a-0123abcd"  # what a killed run leaves
    stale.mkdir(parents=True)
    said, outside = [], os.environ.get("TQDM_DISABLE")
    results = run_notebooks(
        profile="smoke", notebook_dir=nb_dir, runs_root=tmp_path / "runs", overrides={"seed": 4}, log=said.append
    )
    assert os.environ.get("TQDM_DISABLE") == outside  # only the kernels' environment had it
    assert not stale.exists() and any(line.startswith(f"removed {stale}") for line in said)
    assert [r.name for r in results] == ["01_echo"]
    executed = nbformat.read(results[0].output, as_version=4)
    outputs = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "smoke 4 False 1" in outputs  # progress bars off in the kernel: none reaches the book
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected[0].metadata["tags"] == ["injected-parameters", "remove-cell"]  # runs_root stays off the page
    assert results[0].output == tmp_path / "runs" / "smoke" / "notebooks" / "01_echo.ipynb"


def test_failing_notebook_names_notebook_cell_and_error_and_keeps_it(tmp_path):
    nb_dir = tmp_path / "nbs"
    write_notebook(nb_dir, "01_ok.py", "# %%\nx = 1\n")
    write_notebook(nb_dir, "02_bad.py", "# %%\ny = 2\n\n# %%\nraise ValueError('plate 3 is empty')\n")
    write_notebook(nb_dir, "03_never.py", "# %%\nz = 3\n")
    with pytest.raises(NotebookError) as info:
        run_notebooks(profile="smoke", notebook_dir=nb_dir, runs_root=tmp_path / "runs", log=lambda s: None)
    message = str(info.value)
    assert "02_bad" in message and "ValueError" in message and "plate 3 is empty" in message and "cell" in message
    assert "\n" not in message
    out = tmp_path / "runs" / "smoke" / "notebooks"
    assert (out / "02_bad.failed.ipynb").is_file()
    assert (out / "01_ok.ipynb").is_file() and not (out / "03_never.ipynb").exists()


def test_bad_override_fails_before_any_kernel(tmp_path):
    nb_dir = tmp_path / "nbs"
    write_notebook(nb_dir, "01_x.py", "# %%\nx = 1\n")
    with pytest.raises(ConfigError, match="split.n_folds"):
        run_notebooks(
            profile="smoke", notebook_dir=nb_dir, runs_root=tmp_path / "runs", overrides={"split": {"n_folds": 1}}
        )
    assert not (tmp_path / "runs").exists()


def test_select_by_number_or_name(tmp_path):
    for name in ("01_a.py", "02_b.py", "10_c.py"):
        write_notebook(tmp_path, name, "")
    paths = discover_notebooks(tmp_path)
    assert [p.stem for p in select_notebooks(paths, ["02"])] == ["02_b"]
    assert [p.stem for p in select_notebooks(paths, ["10_c", "01"])] == ["01_a", "10_c"]
    with pytest.raises(NotebookError, match="01_a"):
        select_notebooks(paths, ["99"])


def test_parse_overrides():
    assert parse_overrides(["seed=3", "data.opencell.n_images=500", "split.group_by_protein=true"]) == {
        "seed": 3,
        "data": {"opencell": {"n_images": 500}},
        "split": {"group_by_protein": True},
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["seed"])


def test_cli_prints_one_line_error_without_traceback(tmp_path, capsys):
    status = main(["run", "--profile", "smoke", "--runs", str(tmp_path), "--set", "split.n_folds=0"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "split.n_folds" in err


def test_cli_info_names_device_and_versions(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "device: " in out and "torch: " in out and "git: " in out


def test_unchanged_notebook_is_not_executed_again_but_a_change_or_force_reruns_it(tmp_path):
    nb_dir = tmp_path / "nbs"
    body = (
        "# %%\nfrom dinoxfer_lib.store import ArtifactStore\n"
        "store = ArtifactStore(runs_root, 'smoke')\n"
        "store.run_stage('s', lambda f: (f / 'x').write_text('1'), config={})\nprint('executed')\n"
    )
    write_notebook(nb_dir, "01_stage.py", body)
    run = lambda **kw: run_notebooks(profile="smoke", notebook_dir=nb_dir, runs_root=tmp_path / "runs", log=lambda s: None, **kw)
    first = run()[0]
    assert not first.skipped and first.computed == ("s",)
    record = json.loads((tmp_path / "runs" / "smoke" / "notebooks" / "01_stage.run.json").read_text())
    assert record["seconds"] == round(first.seconds, 1) > 0  # what the book's build-minutes table reads
    second = run()[0]
    assert second.skipped and second.reused == ("s",) and "unchanged" in second.summary()
    assert run(force=True)[0].skipped is False
    write_notebook(nb_dir, "01_stage.py", body + "# %%\nprint('edited')\n")
    assert run()[0].skipped is False
    assert run(overrides={"seed": 2})[0].skipped is False
