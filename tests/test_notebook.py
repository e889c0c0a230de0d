"""demo.ipynb: committed clean and valid, and runs headless end to end in quick mode."""

import json
import shutil
import sys
from pathlib import Path

import cv2
import nbformat
import numpy as np
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from config import DEMO

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "demo.ipynb"
PNG = b"\x89PNG"


def read_notebook(path=NOTEBOOK):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def parameters_index(nb):
    return next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))


def test_notebook_is_valid_and_has_no_outputs():
    nb = read_notebook()
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    # Every code cell follows a markdown cell that explains it.
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert i > 0 and nb.cells[i - 1].cell_type == "markdown", f"code cell {i} has no explanation above it"
    params = nb.cells[parameters_index(nb)]
    assert params.cell_type == "code" and "QUICK = True" in params.source
    for name in ("REPO_URL", "EPOCHS = None", "STEPS_PER_EPOCH = None", "PHOTO = None"):
        assert name in params.source
    # The notebook calls the project's functions; it has no model, data or plotting code of its own.
    source = "\n".join(cell.source for cell in code)
    for own_code in (
        "Conv2D",
        "keras.layers",
        "tf.data.Dataset",
        "def build_unet",
        "subplots",
        "model.fit",
        "predictor(",
    ):
        assert own_code not in source, own_code
    calls = ("coco.main(", "train.train(", "figures.plot_curves(", "figures.plot_split(", "inference.cut_out_photos(")
    assert all(call in source for call in calls)
    assert "import results" not in source  # the notebook uses the library modules, not the script


def python_kernel(spec_root):
    """A kernel manager for a 'python3' kernel that runs this interpreter (the .venv's python)."""
    spec_dir = spec_root / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tests)",
        "language": "python",
        "env": {"TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(spec_root)], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def test_notebook_runs_headless_in_quick_mode(tmp_path):
    # A fresh checkout stand-in: the sources only, no data-sample/, runs/ or cutouts/.
    repo = tmp_path / "repo"
    repo.mkdir()
    for path in [*ROOT.glob("*.py"), *ROOT.glob("requirements*.txt"), NOTEBOOK]:
        shutil.copy2(path, repo / path.name)
    shutil.copytree(ROOT / "models", repo / "models")
    me = tmp_path / "me.jpg"  # "your own photo": a figure on a background, 300x200
    photo = np.full((300, 200, 3), (40, 120, 200), np.uint8)
    cv2.ellipse(photo, (100, 190), (55, 110), 0, 0, 360, (200, 160, 140), -1)
    cv2.circle(photo, (100, 70), 30, (180, 140, 120), -1)
    cv2.imwrite(str(me), photo)
    nb = read_notebook(repo / "demo.ipynb")
    # Papermill-style injected parameters: one epoch of three steps, and the photo to cut out; and a
    # smaller built-in sample (a fifth of its photos: test_coco.py checks the sample itself).
    smaller_sample = "import functools, sample\nsample.write_sample = functools.partial(sample.write_sample, num_train=96, num_val=24)"
    injected = nbformat.v4.new_code_cell(
        f"EPOCHS = 1\nSTEPS_PER_EPOCH = 3\nPHOTO = {str(me)!r}\n{smaller_sample}",
        metadata={"tags": ["injected-parameters"]},
    )
    nb.cells.insert(parameters_index(nb) + 1, injected)

    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        km=python_kernel(tmp_path / "kernels"),
        resources={"metadata": {"path": str(repo)}},
    )
    client.execute()  # raises CellExecutionError if a cell fails

    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs)
    assert "nothing to install" in text  # everything is installed: the setup cell ran no pip
    runs = sorted(repo.glob("runs/notebook*/best.keras"))
    assert len(runs) == 1
    run = runs[0].parent
    options = json.loads((run / "config.json").read_text())["options"]
    assert (options["epochs"], options["steps_per_epoch"], options["filter_scale"]) == (1, 3, DEMO.filter_scale)
    for figure in ("curves.png", "notebook_predictions.png"):
        assert (run / figure).read_bytes()[:4] == PNG, figure
    # The shipped model's cutout (cut yourself out), then the trained model's, never overwritten.
    cutouts = sorted((repo / "cutouts").glob("*.png"))
    assert [c.name for c in cutouts] == ["me-2.png", "me.png"]
    for path in cutouts:
        cutout = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert cutout.shape == (300, 200, 4), path.name
