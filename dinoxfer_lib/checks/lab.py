"""Open a book notebook in JupyterLab, run every cell through the user interface, and check what it shows.

What ``make lab`` offers a user, end to end: JupyterLab starts with the jupytext pairing active and the project's
settings (``lab-settings/overrides.json``: percent-format ``.py`` files open as notebooks); the notebook's ``.py``
opens as a notebook; *Run > Run All Cells* executes it in a kernel; the figures render; the save writes the
paired ``.ipynb``. The notebook is a copy in a work folder whose parameters cell was edited as a user would
(``profile = "smoke"``, ``runs_root`` in the work folder), so the repository and its ``runs/`` stay untouched.

The server runs on 127.0.0.1 on a free port with a random token, with its own runtime, settings and workspace
folders (a user's Lab settings cannot change the result) and is stopped by its own process id.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dinoxfer_lib.browser import chromium, free_port
from dinoxfer_lib.errors import DinoxferError
from dinoxfer_lib.notebooks import write_with_parameters

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_SETTINGS = REPO_ROOT / "lab-settings"
# Test-only Lab settings: every cell stays in the page (Lab otherwise renders only the cells in view), and
# no news or update prompts cover the notebook.
_CHECK_SETTINGS = {
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False,
                                                    "doNotDisturbMode": True},
}
# Seconds for the server to answer, and for the server to stop once asked.
SERVER_START_S = 120
SERVER_STOP_S = 30


class LabCheckError(DinoxferError):
    """JupyterLab did not start, did not open the notebook, or did not finish running it."""


@dataclass
class LabReport:
    """What running one notebook through JupyterLab showed, and how long each phase took (seconds)."""

    notebook: Path
    code_cells: int = 0
    executed_cells: int = 0
    images: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def failures(self) -> list[str]:
        """What a user would call broken: a cell error, a cell that never ran, no figure."""
        found = [f"cell error: {error}" for error in self.errors]
        if self.executed_cells < self.code_cells:
            found.append(f"only {self.executed_cells} of {self.code_cells} code cells ran")
        if self.images == 0:
            found.append("no figure rendered")
        return found

    def summary(self) -> str:
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        status = "; ".join(self.failures()) or "ok"
        return (f"{self.notebook.name} in JupyterLab: {self.executed_cells}/{self.code_cells} code cells ran, "
                f"{self.images} figure(s), {len(self.errors)} error(s) ({phases}): {status}")


def check_lab(
    notebook: Path,
    workdir: Path,
    *,
    profile: str = "smoke",
    run_timeout_s: float = 600,
    chromium_path: Path | None = None,
) -> LabReport:
    """Run ``notebook`` (a percent-format ``.py``) through JupyterLab's UI in headless Chromium.

    Parameters
    ----------
    notebook
        The book notebook; a copy with ``profile`` and ``runs_root = workdir/runs`` is what Lab opens.
    workdir
        An empty folder for the copy, its run store and the server's own folders.
    profile
        Profile the copy's parameters cell names.
    run_timeout_s
        How long *Run All Cells* may take.
    chromium_path
        The Chromium binary (default: found on ``PATH``).

    Returns
    -------
    LabReport
        Cells that ran, figures shown, error outputs, and the time of each phase; ``failures()`` lists what is
        wrong (empty when the notebook works in Lab).
    """
    missing = [path for path in (REPO_ROOT / "jupytext.toml", LAB_SETTINGS / "overrides.json") if not path.is_file()]
    if missing:
        raise LabCheckError(f"{missing[0]} is missing: the Lab check runs from a source checkout of dinoxfer")
    workdir = Path(workdir).resolve()
    notebooks = workdir / "notebooks"
    notebooks.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "jupytext.toml", notebooks / "jupytext.toml")
    copy = write_with_parameters(notebook, notebooks / Path(notebook).name, profile=profile,
                                 runs_root=str(workdir / "runs"))
    report = LabReport(notebook=copy)
    started = time.perf_counter()
    with _LabServer(notebooks, workdir / "lab") as (url, token):
        report.seconds["server start"] = time.perf_counter() - started
        with chromium(executable=chromium_path) as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            try:
                _run_all_cells(page, url, token, copy.name, report, run_timeout_s)
            except LabCheckError as exc:
                page.screenshot(path=str(workdir / "lab" / "failure.png"))
                raise LabCheckError(f"{exc} (screenshot: {workdir / 'lab' / 'failure.png'})") from None
            page.close()
    paired = copy.with_suffix(".ipynb")
    if not paired.is_file():
        raise LabCheckError(f"saving {copy.name} in JupyterLab wrote no paired {paired.name}: is jupytext's "
                            "server extension enabled (jupyter server extension list)?")
    _read_saved_notebook(paired, report)
    report.seconds["total"] = time.perf_counter() - started
    return report


def _lab_settings(folder: Path) -> Path:
    """The project's Lab settings plus :data:`_CHECK_SETTINGS`, as an ``overrides.json`` in ``folder``."""
    settings = json.loads((LAB_SETTINGS / "overrides.json").read_text())
    for plugin, values in _CHECK_SETTINGS.items():
        settings.setdefault(plugin, {}).update(values)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "overrides.json").write_text(json.dumps(settings, indent=2))
    return folder


class _LabServer:
    """JupyterLab serving ``root`` on 127.0.0.1; yields ``(base_url, token)``; stopped by its process id."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root, self.state = root, state
        self.token, self.port = secrets.token_hex(16), free_port()
        self.process: subprocess.Popen | None = None
        self.log = None

    def __enter__(self) -> tuple[str, str]:
        env = {**os.environ,
               "JUPYTER_RUNTIME_DIR": str(self.state / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(self.state / "user-settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(self.state / "workspaces")}
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
                   f"--port={self.port}", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                   f"--LabApp.app_settings_dir={_lab_settings(self.state / 'app-settings')}",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        self.log = (self.state / "server.log").open("w")
        # a session of its own: stopping it cannot reach the process that started it
        self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._stop()
                raise LabCheckError(f"JupyterLab exited with status {self.process.returncode} before answering: "
                                    f"{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={self.token}", timeout=5):
                    return url, self.token
            except OSError:
                time.sleep(0.5)
        self._stop()
        raise LabCheckError(f"JupyterLab did not answer on {url} within {SERVER_START_S} s: {self._log_tail()}")

    def __exit__(self, *exc_info) -> None:
        self._stop()

    def _stop(self) -> None:
        """Shut the kernels down through the server, then stop the server by its process id."""
        if self.process.poll() is None:
            base = f"http://127.0.0.1:{self.port}/api/kernels"
            try:
                with urllib.request.urlopen(f"{base}?token={self.token}", timeout=5) as answer:
                    kernels = json.load(answer)
                for kernel in kernels:
                    request = urllib.request.Request(f"{base}/{kernel['id']}?token={self.token}", method="DELETE")
                    urllib.request.urlopen(request, timeout=30).close()
            except OSError:
                pass  # the server is going anyway; SIGTERM below also stops the kernels it still knows
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session's group: its id is the server's
                self.process.wait()
        self.log.close()

    def _log_tail(self) -> str:
        lines = (self.state / "server.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"


# The notebook Lab shows, and how a code cell's prompt reads: "[*]:" queued or running, "[3]:" ran, "[ ]:" never ran
# (Lab stops *Run All* at the first error and leaves the cells below it so).
_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
_PROMPTS_JS = f"""() => [...document.querySelectorAll("{_PANEL} .jp-CodeCell .jp-InputArea-prompt")]
  .map((p) => p.textContent.includes("*") ? "busy" : /\\[\\d+\\]/.test(p.textContent) ? "ran" : "new")"""
_FIGURES_JS = f"""() => [...document.querySelectorAll(
    "{_PANEL} .jp-OutputArea-output img, {_PANEL} .jp-OutputArea-output svg")]
  .filter((el) => el.tagName.toLowerCase() === "svg" || el.naturalWidth > 0).length"""


def _run_all_cells(page, url: str, token: str, name: str, report: LabReport, timeout_s: float) -> None:
    """Open the notebook, *Run > Run All Cells*, wait until no cell is queued and the kernel is idle, save."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    started = time.perf_counter()
    page.goto(f"{url}/lab/tree/{name}?token={token}")
    try:
        page.locator(f"{_PANEL} .jp-Notebook").wait_for(state="visible", timeout=120_000)
    except PlaywrightTimeout:
        raise LabCheckError(f"JupyterLab did not open {name} as a notebook within 120 s") from None
    _wait_for_connected_kernel(page, url, token, name, timeout_s=120)
    report.code_cells = len(page.evaluate(_PROMPTS_JS))
    report.seconds["open notebook"] = time.perf_counter() - started

    started = time.perf_counter()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    try:
        page.wait_for_function(f"() => ({_PROMPTS_JS})().some((state) => state !== 'new')", timeout=30_000)
    except PlaywrightTimeout:
        raise LabCheckError("Run > Run All Cells started no cell within 30 s") from None
    try:
        page.wait_for_function(
            f"""() => !({_PROMPTS_JS})().includes("busy") && document.querySelector(
                "{_PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']") !== null""",
            timeout=timeout_s * 1000, polling=500)
    except PlaywrightTimeout:
        raise LabCheckError(f"Run All Cells did not finish within {timeout_s:.0f} s") from None
    report.seconds["run all cells"] = time.perf_counter() - started
    report.images = page.evaluate(_FIGURES_JS)

    page.keyboard.press("Control+s")
    try:
        page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").wait_for(state="detached", timeout=60_000)
    except PlaywrightTimeout:
        raise LabCheckError("saving the notebook (Ctrl+S) did not finish within 60 s") from None


def _wait_for_connected_kernel(page, url: str, token: str, name: str, *, timeout_s: float) -> None:
    """Wait until the server has an idle kernel for notebook ``name`` with the page connected to it.

    Lab shows an idle kernel indicator before its connection is up, and a *Run All* sent earlier is lost; the
    server's session list says when the kernel has its client.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.get_by_text("Select Kernel", exact=True).count():
            raise LabCheckError(f"JupyterLab asks which kernel to start for {name}: its jupytext header has no "
                                "kernelspec (jupytext --set-kernel python3)")
        with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=10) as answer:
            sessions = [s for s in json.load(answer) if s.get("path") == name]
        kernel = sessions[0]["kernel"] if sessions else {}
        if kernel.get("execution_state") == "idle" and kernel.get("connections", 0) >= 1:
            return
        time.sleep(0.5)
    raise LabCheckError(f"no idle kernel connected to {name} within {timeout_s:.0f} s")


def _read_saved_notebook(path: Path, report: LabReport) -> None:
    """Cells that ran and error outputs, from the ``.ipynb`` Lab saved (the DOM shows errors and stderr alike)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    report.executed_cells = sum(cell.execution_count is not None for cell in code)
    report.errors = [f"cell {i + 1}: {output.ename}: {output.evalue}"
                     for i, cell in enumerate(code) for output in cell.outputs if output.output_type == "error"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dinoxfer_lib.checks.lab", description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path, nargs="?", default=Path("notebooks/01_datasets.py"),
                        help="the notebook to run (default: %(default)s)")
    parser.add_argument("--profile", default="smoke", help="profile its parameters cell gets (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (copy, runs, server log) even "
                        "when the check passes")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="dinoxfer-lab-"))
    try:
        report = check_lab(args.notebook, workdir, profile=args.profile)
    except DinoxferError as exc:
        print(f"error: {exc} (work folder kept: {workdir})", file=sys.stderr)
        return 2
    print(report.summary())
    if report.failures() or args.keep:
        print(f"work folder (notebook, runs, server log): {workdir}")
    else:
        shutil.rmtree(workdir)
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
