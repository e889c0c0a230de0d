"""Trains the U-net: the original recipe by default, on tf.data.

    python train.py                       # the original recipe on data/{train,val}
    python train.py --demo                # a few minutes on the built-in sample (python coco.py --sample first)
    python train.py --resume runs/NAME    # continue a stopped run where it stopped

From Python: ``summary = train(TrainConfig(data_dir="data", filter_scale=0.25))``, later
``resume(summary.run_dir, epochs=60)``; both return a RunSummary. The options (TrainConfig,
the DEMO preset, the command line) are config.py's.

A run writes runs/NAME/: config.json (options, precision, versions), state.json,
last.keras (every epoch), best.keras (best val_iou), history.csv, curves.png and, when
DATA/test exists, test_metrics.json and test_predictions.png from best.keras.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cli

if __name__ == "__main__":  # run as a script: first, before TensorFlow is imported (see cli.quiet_tensorflow)
    cli.quiet_tensorflow()

import keras

import data
import encoders
import figures
import folders
import hardware
import images
import inference
import model as unet
import runs
from config import ConfigError, TrainConfig, parse_args, read_config


class TrainError(Exception):
    """An expected problem (missing data, existing run, bad --resume); printed as one line."""


# ---------------------------------------------------------------------------- callbacks


class RunCheckpoint(keras.callbacks.Callback):
    """At each epoch end: last.keras, best.keras (by val_iou), history.csv, curves.png, state.json.

    Stops the run at a NaN loss (keeping the last good checkpoint). A file that cannot be
    written (a full disk) stops it with an images.WriteError that names the last good
    checkpoint. Non-chief workers of a multi-worker run save to a scratch folder (every
    worker must take part in saving) and write nothing else.
    """

    def __init__(self, run_dir: Path, state: dict, chief: bool):
        super().__init__()
        self.run_dir, self.state, self.chief = run_dir, state, chief
        self.started, self.nan = time.time(), None
        # The epoch of the last.keras on disk (a resumed run's is its last finished epoch).
        self.saved_epoch = state["epochs_done"] if (run_dir / "last.keras").is_file() else None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan = (self.state["epochs_done"] + 1, batch + 1)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.nan or not math.isfinite(float((logs or {}).get("loss", 0.0))):
            return  # keep the last good checkpoint
        try:
            self.save(epoch, dict(logs or {}))
        except images.WriteError as e:
            raise images.WriteError(f"{e}; {self.last_good()}") from None

    def last_good(self) -> str:
        if self.saved_epoch is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint is {self.run_dir / 'last.keras'} from epoch {self.saved_epoch}"

    def save(self, epoch: int, logs: dict) -> None:
        state = self.state
        target = self.run_dir if self.chief else self.run_dir / f".worker-{os.getpid()}"
        target.mkdir(exist_ok=True)
        runs.save_model_atomic(self.model, target / "last.keras")
        self.saved_epoch = epoch + 1
        val_iou = logs.get("val_iou", logs.get("iou"))
        improved = state["best_val_iou"] is None or val_iou > state["best_val_iou"]
        if improved:  # the model just saved: a copy of the file, not a second save
            runs.copy_atomic(target / "last.keras", target / "best.keras")
        if not self.chief:
            return
        state.update(epochs_done=epoch + 1, iterations=int(self.model.optimizer.iterations.numpy()), step_in_epoch=0)
        if improved:
            state.update(best_val_iou=float(val_iou), best_epoch=epoch + 1)
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        row.update(learning_rate=float(self.model.optimizer.learning_rate), seconds=time.time() - self.started)
        figures.append_history(self.run_dir / "history.csv", row)
        figures.plot_curves(self.run_dir / "history.csv")
        runs.write_json(self.run_dir / "state.json", state)


class Validation(keras.callbacks.Callback):
    """After each epoch: the loss and metrics of every source's val split, as val_* in the logs.

    With --precise-bn the BatchNorm statistics are re-estimated first, on ``count`` training
    batches (``model.recalibrate_batchnorm``). With one source the logs hold what Keras'
    own validation gives; with several, val_<metric> is the mean over the sources (each
    counts the same, whatever its size) and val_<source>_<metric> each source's.
    """

    def __init__(self, sources: dict, calibration=None, count: int = 0, verbose: int = 1):
        super().__init__()
        self.sources, self.calibration, self.count, self.verbose = sources, calibration, count, verbose

    def on_epoch_end(self, epoch, logs=None):
        if self.calibration is not None:
            unet.recalibrate_batchnorm(self.model, (next(self.calibration) for _ in range(self.count)))
        scores = {name: self.model.evaluate(val, verbose=0, return_dict=True) for name, val in self.sources.items()}
        logs = logs if logs is not None else {}
        for metric in next(iter(scores.values())):
            logs[f"val_{metric}"] = sum(s[metric] for s in scores.values()) / len(scores)
            if len(scores) > 1:
                logs.update({f"val_{name}_{metric}": s[metric] for name, s in scores.items()})
        if self.verbose:
            per_source = ", ".join(f"{name} {s['iou']:.4f}" for name, s in scores.items())
            print(f"epoch {epoch + 1}: val_iou {logs['val_iou']:.4f}" + (f" ({per_source})" if len(scores) > 1 else ""))


# ---------------------------------------------------------------------------- training steps


def build_model(config: TrainConfig, strategy):
    """A new U-net of the config's encoder and filter scale, compiled with its optimizer, loss and schedule."""
    with strategy.scope():
        try:
            model = unet.build((None, None, 3), config.encoder, config.encoder_weights_source, config.filter_scale)
        except encoders.WeightsError as e:
            raise TrainError(str(e)) from None
        return unet.compile_unet(
            model,
            learning_rate=config.learning_rate,
            decay_steps=config.decay_steps,
            decay_rate=config.decay_rate,
            jit_compile=config.jit_compile,
            loss=config.loss,
            schedule=config.schedule,
            total_steps=config.total_steps,
            warmup_steps=config.warmup_steps,
        )


def fit(
    model, config: TrainConfig, run_dir: Path, state: dict, datasets: data.Datasets, callbacks, chief: bool
) -> dict:
    """Trains to the last epoch (first finishing an epoch a Ctrl-C cut short); Ctrl-C saves last.keras."""
    checkpoint = RunCheckpoint(run_dir, state, chief)
    validation = Validation(datasets.val, datasets.calibration, config.precise_bn, config.verbose)
    callbacks = [validation, checkpoint, *callbacks]  # the checkpoint reads the validation's val_iou
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))

    def fit_until(epochs: int, steps: int) -> None:
        model.fit(
            datasets.train,
            initial_epoch=state["epochs_done"],
            epochs=epochs,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=config.verbose,
            shuffle=False,  # the dataset shuffles itself
        )

    started, interrupted = time.time(), False
    try:
        if 0 < state["step_in_epoch"] < config.steps_per_epoch and state["epochs_done"] < config.epochs:
            fit_until(state["epochs_done"] + 1, config.steps_per_epoch - state["step_in_epoch"])
        if state["epochs_done"] < config.epochs and not checkpoint.nan:
            fit_until(config.epochs, config.steps_per_epoch)
    except KeyboardInterrupt:
        interrupted = True
        if chief:
            try:
                runs.save_model_atomic(model, run_dir / "last.keras")
            except images.WriteError as e:
                raise images.WriteError(f"{e}; {checkpoint.last_good()}") from None
            state["iterations"] = int(model.optimizer.iterations.numpy())
            state["step_in_epoch"] = state["iterations"] - state["epochs_done"] * config.steps_per_epoch
            runs.write_json(run_dir / "state.json", state)
    return {"seconds": time.time() - started, "interrupted": interrupted, "nan": checkpoint.nan}


def evaluate_best(run_dir: Path, config: TrainConfig) -> dict | None:
    """best.keras on each source's test split: test_metrics.json and test_predictions.png (None without one).

    With several sources, test_metrics.json holds {"sources": {name: metrics}} and the figure
    is the first source's.
    """
    tests = {n: Path(d) / "test" for n, d in zip(config.source_names, config.data_dir, strict=True)}
    tests = {name: folder for name, folder in tests.items() if folder.is_dir()}
    if not tests or not (run_dir / "best.keras").is_file():
        return None
    predictor = inference.Predictor(inference.load_model(run_dir / "best.keras"), config.image_size)
    scores = {}
    for name, folder in tests.items():
        scores[name] = inference.evaluate(predictor, folder, config.batch_size)
        scores[name].pop("per_image")
        scores[name]["split"] = str(folder)
    report = next(iter(scores.values())) if len(scores) == 1 else {"sources": scores}
    runs.write_json(run_dir / "test_metrics.json", {**report, "model": str(run_dir / "best.keras")})
    figures.plot_split(predictor, next(iter(tests.values())), run_dir / "test_predictions.png", rows=8)
    return report


def facts(policy: str, reason: str, strategy, datasets: data.Datasets) -> dict:
    """What config.json records beside the options (and versions): the precision used and why, the machine."""
    return {
        "precision": policy,
        "precision_reason": reason,
        "cpu": hardware.cpu_info().describe(),
        "devices": strategy.num_replicas_in_sync,
        "train_images": sum(datasets.train_images.values()),
        "train_images_per_source": datasets.train_images,
    }


@dataclass(frozen=True)
class RunSummary:
    """What ``train`` and ``resume`` return: the run folder and how this part of the run ended."""

    run_dir: Path  # pass it to resume() to continue the run
    state: dict  # state.json: epochs_done, iterations, step_in_epoch, best_val_iou, best_epoch
    seconds: float  # training time of this call
    interrupted: bool  # by Ctrl-C: last.keras holds the exact step
    nan: tuple[int, int] | None  # (epoch, step) of a NaN loss that stopped the run
    test: dict | None = None  # metrics of best.keras on DATA/test (a finished run with a test split)
    chief: bool = True  # False on the other workers of a multi-worker run (the chief writes the files)


def run_training(config: TrainConfig, run_dir: Path | None, state: dict | None, callbacks=()) -> RunSummary:
    """The steps of a run: precision, devices, data, model, fit, test. ``run_dir`` None: a new run."""
    policy, reason = hardware.choose_precision(config.mixed_precision, hardware.has_gpu(), hardware.cpu_info())
    if config.mixed_precision != "off" and policy == "float32":
        print(f"train.py: note: --mixed-precision: {reason}", flush=True)
    if run_dir is None and config.encoder_weights_source:  # before the data: a missing file or package fails at once
        try:
            encoders.resolve_weights(config.encoder_weights_source)
        except encoders.WeightsError as e:
            raise TrainError(str(e)) from None
    with hardware.precision_policy(policy):
        try:
            strategy = hardware.make_strategy(config.distribute)
        except ValueError as e:
            raise TrainError(str(e)) from None
        chief = hardware.is_chief(strategy)
        try:
            datasets = data.for_training(config, state["epochs_done"] if state else 0)
        except folders.DatasetError as e:
            raise TrainError(str(e)) from None
        run_facts = facts(policy, reason, strategy, datasets)
        if run_dir is None:  # the model first: weights that do not load leave no run folder behind
            model = build_model(config, strategy)
            run_dir, state = runs.start_run(config, chief, run_facts)
        else:
            model = runs.reopen_run(run_dir, config, strategy, state, chief, run_facts)
        if config.fused_batchnorm:
            unet.use_fused_batchnorm(model)
        print_config(config, run_dir, reason, strategy, state)
        ended = fit(model, config, run_dir, state, datasets, callbacks, chief)
    test = None
    if not chief:  # the chief holds the run's files; drop this worker's scratch copies
        shutil.rmtree(run_dir / f".worker-{os.getpid()}", ignore_errors=True)
    elif not (ended["interrupted"] or ended["nan"]):
        test = evaluate_best(run_dir, config)
    return RunSummary(run_dir, state, **ended, test=test, chief=chief)


def train(config: TrainConfig = TrainConfig(), callbacks=()) -> RunSummary:
    """Starts a new run of ``config`` in runs_dir/name and trains it.

    Args:
        config: the options (``TrainConfig()`` is the original recipe, ``config.DEMO`` the demo).
        callbacks: extra Keras callbacks (tests use one to stop a run part-way, as Ctrl-C).

    Returns:
        A RunSummary; ``resume(summary.run_dir)`` continues the run.
    """
    return run_training(config, None, None, callbacks)


def resume(run_dir: str | Path, callbacks=(), **changes) -> RunSummary:
    """Continues the stopped (or finished) run in ``run_dir``, e.g. ``train(...).run_dir``.

    ``changes`` may raise ``epochs`` and set the options that may change on --resume (the
    others must equal the run's); returns a RunSummary, as ``train`` does.
    """
    run_dir = Path(run_dir)
    for needed in ("config.json", "state.json", "last.keras"):
        if not (run_dir / needed).is_file():
            raise TrainError(f"--resume {run_dir}: {needed} not found (is this a run folder written by train.py?)")
    try:
        config = read_config(run_dir).resumed(**changes)
    except ConfigError as e:
        raise TrainError(f"--resume {run_dir}: {e}") from None
    return run_training(config, run_dir, json.loads((run_dir / "state.json").read_text()), callbacks)


# ---------------------------------------------------------------------------- script


def print_config(config: TrainConfig, run_dir: Path, reason: str, strategy, state: dict) -> None:
    extra = {"run_dir": run_dir, "precision": reason, "replicas": strategy.num_replicas_in_sync}
    if state["iterations"]:
        extra["resuming"] = (
            f"after epoch {state['epochs_done']}, step {state['iterations']} "
            f"(+{state['step_in_epoch']} in the next epoch)"
        )
    cli.print_config("train.py", {**config.to_dict(), **extra})


def print_summary(summary: RunSummary) -> None:
    run_dir, state, minutes = summary.run_dir, summary.state, summary.seconds / 60
    if summary.nan:
        epoch, step = summary.nan
        saved = (
            f"{run_dir}/last.keras holds the last good epoch"
            if state["epochs_done"]
            else "no checkpoint was written (it happened in the first epoch)"
        )
        cli.error(
            "train.py",
            f"the loss became NaN at epoch {epoch}, step {step}; the run stopped; {saved}. Try a lower --learning-rate.",
        )
    elif summary.interrupted:
        print(
            f"interrupted after {minutes:.1f} min: saved {run_dir}/last.keras; continue: python train.py --resume {run_dir}"
        )
    elif not summary.chief:
        print(f"worker done in {minutes:.1f} min; the chief worker writes {run_dir}")
    else:
        print(f"done in {minutes:.1f} min: {state['epochs_done']} epochs, {state['iterations']} steps")
        if state["best_val_iou"] is not None:
            print(f"  best val_iou {state['best_val_iou']:.4f} at epoch {state['best_epoch']}: {run_dir}/best.keras")
        if summary.test:
            for name, t in summary.test.get("sources", {"test": summary.test}).items():
                print(
                    f"  {name if name != 'test' else 'test'} ({t['images']} images): accuracy {t['accuracy']:.4f}, "
                    f"iou {t['iou']:.4f}, seed_iou {t['seed_iou']:.4f}"
                )
            print(f"  -> {run_dir}/test_metrics.json, {run_dir}/test_predictions.png")
        print(f"  history: {run_dir}/history.csv, curves: {run_dir}/curves.png")


def main(argv=None) -> int:
    config, resume_dir, given = parse_args(argv)
    try:
        summary = resume(resume_dir, **given) if resume_dir else train(config)
    except images.WriteError as e:  # e.g. a full disk: one line that names the last good checkpoint
        cli.error("train.py", str(e))
        return 1
    except (TrainError, runs.RunError) as e:
        cli.error("train.py", str(e))
        return 2
    print_summary(summary)
    if summary.nan:
        return 1
    return 130 if summary.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
