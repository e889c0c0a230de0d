"""A training run's folder: created new (never over an existing run), reopened to resume, written atomically.

runs/NAME/ holds config.json (config.py writes and reads it), state.json (epochs and steps done,
the best epoch), last.keras and best.keras, and what train.py adds (history, curves, test metrics).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import keras

import images
from config import TrainConfig, free_name, write_config


class RunError(Exception):
    """An expected problem with a run folder (it exists already); printed as one line."""


def write_json(path: Path, obj) -> None:
    images.write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def _write_atomic(path: Path, write) -> None:
    """``write(tmp)`` to a hidden temporary name beside ``path`` (its suffix kept), then rename: never a
    partial file, nor a temporary one.

    Raises:
        images.WriteError: naming ``path`` and the cause (e.g. a full disk).
    """
    tmp = images.tmp_name(path, keep_suffix=True)  # Keras saves by the suffix
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise images.WriteError.of(path, e) from None
    finally:
        images.remove_tmp(tmp)


def save_model_atomic(model, path: Path) -> None:
    """model.save to ``path`` through a temporary .keras file (``_write_atomic``)."""
    _write_atomic(path, model.save)


def copy_atomic(source: Path, path: Path) -> None:
    """A copy of the file ``source`` at ``path``, through a temporary file (``_write_atomic``)."""
    _write_atomic(path, lambda tmp: shutil.copyfile(source, tmp))


def start_run(config: TrainConfig, chief: bool, facts: dict) -> tuple[Path, dict]:
    """runs/NAME, new (never an existing run), with config.json and state.json; a non-chief worker's: a scratch name."""
    state = {"epochs_done": 0, "iterations": 0, "step_in_epoch": 0, "best_val_iou": None, "best_epoch": None}
    runs = Path(config.runs_dir)
    if not chief:
        return runs / (config.name or "worker"), state
    run_dir = runs / (config.name or free_name(runs, time.strftime("%Y%m%d-%H%M%S")))
    if run_dir.exists():
        raise RunError(f"{run_dir} already exists: continue it with --resume {run_dir}, or choose another --name")
    try:
        run_dir.mkdir(parents=True)
    except OSError as e:
        raise images.WriteError.of(f"{run_dir}/", e) from None
    write_config(run_dir, config, facts)
    write_json(run_dir / "state.json", state)
    return run_dir, state


def reopen_run(run_dir: Path, config: TrainConfig, strategy, state: dict, chief: bool, facts: dict):
    """The stopped run's last.keras (optimizer included); config.json updated with today's options."""
    with strategy.scope():
        model = keras.saving.load_model(run_dir / "last.keras")
    state["step_in_epoch"] = int(model.optimizer.iterations.numpy()) - state["epochs_done"] * config.steps_per_epoch
    if chief:
        write_config(run_dir, config, facts)
    return model
