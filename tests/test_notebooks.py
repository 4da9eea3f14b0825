"""The notebooks as Jupyter users meet them: paired .ipynb with a kernelspec, plain papermill, discoverable
parameters, and a resolved config a user can copy as a profile."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from dinoxfer_lib.cli import main
from dinoxfer_lib.config import available_profiles, config_yaml, load_config
from dinoxfer_lib.data.dataset import load_imageset
from dinoxfer_lib.errors import ConfigError, NotebookError
from dinoxfer_lib.notebooks import common_parameters, pair_notebooks, read_parameters
from dinoxfer_lib.runner import discover_notebooks

REPO = Path(__file__).resolve().parents[1]


def copy_notebook(folder: Path, stem: str = "01_datasets") -> Path:
    """A copy of one book notebook and the repository's jupytext.toml, so the repository stays untouched."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "jupytext.toml", folder / "jupytext.toml")
    return Path(shutil.copy2(REPO / "notebooks" / f"{stem}.py", folder / f"{stem}.py"))


def test_every_notebook_accepts_the_four_runner_parameters():
    parameters = common_parameters(discover_notebooks(REPO / "notebooks"))
    assert parameters == {"profile": "demo", "overrides": {}, "runs_root": "../runs", "force": False}


def test_read_parameters_rejects_what_papermill_could_not_override(tmp_path):
    good = tmp_path / "01_a.py"
    good.write_text('# %%\nx = 1\n\n# %% tags=["parameters"]\nprofile = "smoke"\nk = (1, 2)\n\n# %%\ny = 2\n')
    assert read_parameters(good) == {"profile": "smoke", "k": (1, 2)}
    missing = tmp_path / "02_b.py"
    missing.write_text("# %%\nprofile = 'smoke'\n")
    with pytest.raises(NotebookError, match="02_b.py: no cell tagged 'parameters'"):
        read_parameters(missing)
    computed = tmp_path / "03_c.py"
    computed.write_text('# %% tags=["parameters"]\nimport os\nroot = os.getcwd()\n')
    with pytest.raises(NotebookError, match="line 1: expected `name = literal`"):
        read_parameters(computed)
    call = tmp_path / "04_d.py"
    call.write_text('# %% tags=["parameters"]\nroot = str(1)\n')
    with pytest.raises(NotebookError, match="'root' = 'str\\(1\\)' is not a literal"):
        read_parameters(call)


def test_run_help_lists_the_parameters_and_the_option_setting_each(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    for line in ("profile = 'demo'", "overrides = {}", "runs_root = '../runs'", "force = False"):
        assert line in help_text
    assert "--set KEY=VALUE" in help_text and "-y 'overrides: {seed: 1}'" in help_text


def test_pair_notebooks_writes_an_ipynb_with_kernelspec_and_the_same_cells(tmp_path, capsys):
    source = copy_notebook(tmp_path / "nbs")
    assert main(["notebooks", "--notebooks", str(source.parent)]) == 0
    paired = source.with_suffix(".ipynb")
    assert capsys.readouterr().out.strip() == str(paired)
    notebook = nbformat.read(paired, as_version=4)
    assert notebook.metadata.kernelspec.name == "python3" and notebook.metadata.kernelspec.language == "python"
    tags = [cell.metadata.get("tags", []) for cell in notebook.cells]
    assert ["parameters", "remove-cell"] in tags  # papermill's tag, and the book leaves the cell out
    assert source.read_text() == (REPO / "notebooks" / "01_datasets.py").read_text()  # the .py is unchanged


def test_pair_notebooks_without_jupytext_config_says_what_is_missing(tmp_path):
    (tmp_path / "01_a.py").write_text('# %% tags=["parameters"]\nprofile = "demo"\n')
    with pytest.raises(NotebookError, match="not paired: expected a jupytext.toml"):
        pair_notebooks(tmp_path)


@pytest.mark.parametrize("profile", available_profiles())
def test_config_yaml_loads_back_as_the_same_config(profile, tmp_path):
    overrides = {"seed": 7, "probe": {"epochs": 3}}
    config = load_config(profile, overrides)
    path = tmp_path / "copied.yaml"
    path.write_text(config_yaml(config, source=profile, overrides=overrides))
    again = load_config(str(path))
    assert again.profile == "copied"
    assert {**again.to_dict(), "profile": profile} == config.to_dict()


def test_config_command_prints_the_resolved_config(capsys):
    assert main(["config", "--profile", "smoke", "--set", "split.n_folds=4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# dinoxfer config resolved from profile 'smoke' with overrides")
    values = yaml.safe_load(out)
    assert values["split"]["n_folds"] == 4 and values["data"]["opencell"]["n_images"] == 240
    assert values["probe"]["lr"] == load_config("smoke").probe.lr  # defaults are written too
    assert "profile" not in values


def test_overrides_given_as_text_name_the_papermill_option():
    with pytest.raises(ConfigError, match="-y 'overrides: "):
        load_config("smoke", "{seed: 1}")


@pytest.mark.slow
def test_plain_papermill_command_line_runs_a_paired_notebook(tmp_path):
    """What the README shows: pair the notebooks, then call papermill with no kernel or language flags."""
    source = copy_notebook(tmp_path / "nbs")
    pair_notebooks(source.parent)
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "papermill", "01_datasets.ipynb", "out.ipynb", "-p", "profile", "smoke",
               "-p", "runs_root", str(runs), "-y", "overrides: {data: {opencell: {n_images: 200}}}"]
    done = subprocess.run(command, cwd=source.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    executed = nbformat.read(source.parent / "out.ipynb", as_version=4)
    injected = [cell for cell in executed.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source
    outputs = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert sum("image/png" in output.get("data", {}) for output in outputs) >= 5  # the chapter's figures
    assert executed.metadata.papermill.parameters["overrides"] == {"data": {"opencell": {"n_images": 200}}}
    opencell = load_imageset(runs / "smoke" / "datasets" / "opencell")
    assert len(opencell) == 200 and opencell.image_size == (32, 32)  # the smoke profile, with the override


def test_the_intro_lists_every_parameter_the_notebooks_accept():
    intro = (REPO / "book" / "intro.md").read_text()
    listed = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", intro, flags=re.M)
    common = common_parameters(discover_notebooks(REPO / "notebooks"))
    assert [name for name, _ in listed] == list(common)
    assert [default for _, default in listed] == [json.dumps(value) if isinstance(value, str) else repr(value)
                                                   for value in common.values()]
