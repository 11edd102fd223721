"""The notebooks run top to bottom on the bundled sample (executed with nbclient), and are committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from core.config import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def _execute(name: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # cwd is an unrelated temporary folder: the notebooks must not depend on where they are started.
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


@pytest.mark.parametrize("name", ["data_exploration.ipynb", "gradcam_analysis.ipynb"])
def test_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert not any("sys.path" in c.source for c in code)  # imports come from the installed package


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch) -> Path:
    out = tmp_path / "out"
    monkeypatch.setenv("NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models; extra threads only spin on a shared CPU
    monkeypatch.delenv("DATA_ROOT", raising=False)
    monkeypatch.delenv("GRADCAM_CHECKPOINT", raising=False)
    return out


def test_data_exploration_runs(tmp_path: Path, kernel_env: Path) -> None:
    nb = _execute("data_exploration.ipynb", tmp_path)
    for name in ("dataset_stats.json", "class_distribution_train.png", "sample_grid.png", "augmentation_preview.png",
                 "subset/class_distribution.csv", "subset/class_distribution.png"):
        assert (kernel_env / name).stat().st_size > 0, name
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # class distribution, sample grid, augmentation preview, subset distribution


def test_gradcam_analysis_trains_then_analyses(tmp_path: Path, kernel_env: Path, monkeypatch) -> None:
    monkeypatch.setenv("NB_EPOCHS", "1")
    monkeypatch.setenv("NB_IMAGE_SIZE", "32")
    monkeypatch.setenv("NB_FRACTION", "0.3")
    nb = _execute("gradcam_analysis.ipynb", tmp_path)
    assert (kernel_env / "phase1" / "models" / "best.pt").is_file()
    report = kernel_env / "gradcam" / "report.html"
    assert report.stat().st_size > 10_000
    assert (kernel_env / "batch_cams.png").stat().st_size > 0
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "val images: top-1" in text and str(report) in text
