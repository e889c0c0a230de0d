"""Trains the U-net with the original recipe, on tf.data.

    python train.py                       # the original recipe on data/{train,val}
    python train.py --demo                # the built-in sample: build, train briefly, evaluate, plot
    python train.py --resume runs/NAME    # continue a stopped run where it stopped

A run writes runs/NAME/: config.json, last.keras (every epoch), best.keras (best val_iou),
history.csv, curves.png, state.json and, when DATA/test exists, test_metrics.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

# Defaults: the original recipe (see README, "How the original maps to this repository").
DEFAULTS = dict(
    data_dir="data",  # coco.py's output: data/{train,val,test}
    image_size=128,  # the original trained on 128x128
    batch_size=32,
    epochs=50,
    steps_per_epoch=300,  # the training set repeats; an epoch is a number of steps
    validation_steps=10,  # batches of val/ per validation (0: all of it)
    seed=1,
    learning_rate=0.002,  # Adam, ExponentialDecay(0.002, 300, 0.98, staircase=True)
    decay_steps=300,
    decay_rate=0.98,
    runs_dir="runs",
)
# --demo: the built-in sample and a schedule of a few minutes on a laptop CPU. It uses the
# fast options (bfloat16 and the fused BatchNorm kernel, ~1.9x the float32 speed) and a
# cosine schedule that ends at 0, so that the last epochs settle instead of swinging.
DEMO = dict(
    data_dir="data-sample",
    epochs=12,
    steps_per_epoch=25,
    batch_size=16,
    validation_steps=0,
    name="demo",
    mixed_precision=True,
    fused_batchnorm=True,
    schedule="cosine",
    warmup_steps=20,
    precise_bn=8,
)
METRICS = ("loss", "accuracy", "seed_iou", "iou")
HISTORY_FIELDS = ["epoch", *METRICS, *(f"val_{m}" for m in METRICS), "learning_rate", "seconds"]
# Options a resumed run takes from its config.json (--epochs may be raised to train longer).
FIXED_ON_RESUME = [
    "data_dir",
    "image_size",
    "batch_size",
    "steps_per_epoch",
    "validation_steps",
    "seed",
    "learning_rate",
    "decay_steps",
    "decay_rate",
    "schedule",
    "warmup_steps",
    "loss",
    "augment",
    "mixed_precision",
    "jit_compile",
    "distribute",
    "demo",
    "name",
    "runs_dir",
]


class TrainError(Exception):
    """An expected problem (bad option, missing data, existing run); printed as one line."""


# ---------------------------------------------------------------------------- options


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the original U-net (the original recipe by default).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = DEFAULTS
    parser.add_argument("--data-dir", default=d["data_dir"], help="folder with train/, val/ (and test/) from coco.py")
    parser.add_argument("--image-size", type=int, default=d["image_size"], help="height and width, a multiple of 32")
    parser.add_argument(
        "--batch-size", type=int, default=d["batch_size"], help="global batch size (split across devices)"
    )
    parser.add_argument("--epochs", type=int, default=d["epochs"], help="number of epochs")
    parser.add_argument("--steps-per-epoch", type=int, default=d["steps_per_epoch"], help="training steps per epoch")
    parser.add_argument(
        "--validation-steps", type=int, default=d["validation_steps"], help="val/ batches per validation; 0: all"
    )
    parser.add_argument("--seed", type=int, default=d["seed"], help="random seed (weights, shuffling, dropout)")
    parser.add_argument("--learning-rate", type=float, default=d["learning_rate"], help="Adam's initial learning rate")
    parser.add_argument(
        "--decay-steps", type=int, default=d["decay_steps"], help="learning rate x decay-rate every this many steps"
    )
    parser.add_argument(
        "--decay-rate", type=float, default=d["decay_rate"], help="exponential decay factor (staircase)"
    )
    parser.add_argument(
        "--schedule",
        choices=("exponential", "cosine"),
        default="exponential",
        help="learning-rate schedule: the original's exponential decay, or a cosine to 0 at the last step",
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=0, help="with --schedule cosine: steps of linear warm-up from 0"
    )
    parser.add_argument(
        "--loss", choices=("bce", "bce_dice"), default="bce", help="binary cross-entropy, or BCE + soft Dice"
    )
    parser.add_argument(
        "--augment",
        action="store_true",
        help="random upper-body/zoom crops with aspect jitter, flips and colour jitter (data.augment)",
    )
    parser.add_argument(
        "--precise-bn",
        type=int,
        default=0,
        metavar="BATCHES",
        help="before each validation, re-estimate BatchNorm statistics on this many training batches "
        "(dropout off); 0: the original's moving averages",
    )
    parser.add_argument("--runs-dir", default=d["runs_dir"], help="where run folders are created")
    parser.add_argument("--name", default=None, help="run folder name (default: the start time; with --demo: demo)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue the run in RUN_DIR (its config.json fixes the options)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="build the built-in sample if missing, train a short schedule on it, evaluate and plot ("
        + ", ".join(f"{k}={v}" for k, v in DEMO.items())
        + "; options given explicitly win)",
    )
    parser.add_argument(
        "--mixed-precision", action="store_true", help="bfloat16 on CPU, float16 on GPU; sigmoid and loss in float32"
    )
    parser.add_argument(
        "--fused-batchnorm",
        action="store_true",
        help="run BatchNormalization with TensorFlow's fused kernel: the same math, faster (saved models unchanged)",
    )
    parser.add_argument("--jit-compile", action="store_true", help="compile the training step with XLA (slower on CPU)")
    parser.add_argument(
        "--distribute",
        choices=("none", "mirrored", "multiworker"),
        default="none",
        help="mirrored: all local GPUs (or CPUs); multiworker: the cluster in TF_CONFIG",
    )
    parser.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs to RUN_DIR/tensorboard")
    parser.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress: 0 silent, 1 bar, 2 a line per epoch"
    )

    args = parser.parse_args(argv)
    # Which options were given explicitly: --demo changes only the others, and --resume
    # refuses explicit options that disagree with the run's.
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    args.explicit = sorted(vars(parser.parse_args(argv)))
    if args.demo:
        for key, value in DEMO.items():
            if key not in args.explicit:
                setattr(args, key, value)
        if "warmup_steps" not in args.explicit:  # a shortened demo keeps a proportionate warm-up
            args.warmup_steps = min(args.warmup_steps, args.epochs * args.steps_per_epoch // 5)
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One clear line per bad value, via parser.error (exit code 2)."""
    if args.image_size <= 0 or args.image_size % 32:
        parser.error(
            f"--image-size must be a positive multiple of 32 (the U-net pools five times). Received: {args.image_size}"
        )
    for name in ("batch_size", "epochs", "steps_per_epoch", "decay_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1. Received: {getattr(args, name)}")
    if args.warmup_steps < 0 or (args.schedule == "cosine" and args.warmup_steps >= args.epochs * args.steps_per_epoch):
        parser.error(
            f"--warmup-steps must be 0 or more and, with --schedule cosine, fewer than the run's "
            f"{args.epochs * args.steps_per_epoch} steps. Received: {args.warmup_steps}"
        )
    if args.precise_bn < 0:
        parser.error(f"--precise-bn must be 0 (off) or a number of batches. Received: {args.precise_bn}")
    if args.precise_bn and args.distribute != "none":
        parser.error("--precise-bn works without --distribute only")
    if args.validation_steps < 0:
        parser.error(f"--validation-steps must be 0 (all) or more. Received: {args.validation_steps}")
    if not args.learning_rate > 0 or not 0 < args.decay_rate <= 1:
        parser.error(
            f"--learning-rate must be > 0 and --decay-rate in (0, 1]. Received: {args.learning_rate}, {args.decay_rate}"
        )


# ---------------------------------------------------------------------------- setup


def make_strategy(kind: str):
    """The tf.distribute strategy for --distribute."""
    import tensorflow as tf

    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if kind == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise TrainError(
                "--distribute multiworker needs the cluster in the TF_CONFIG environment variable (see README)"
            )
        return _multi_worker_strategy()
    return tf.distribute.get_strategy()


def _multi_worker_strategy():
    """MultiWorkerMirroredStrategy with a ``reduce`` that Keras 3's fit() can use.

    Keras 3.15 calls ``strategy.reduce`` on a nested (images, masks) batch and, for the
    logs, with ``axis=0`` on per-replica scalars; MultiWorkerMirroredStrategy accepts
    neither (keras-team/keras#20585). This reduces each value on its own and scalars
    across replicas, as MirroredStrategy does.
    """
    import tensorflow as tf

    class Strategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def reduce_one(v):
                first = v.values[0] if hasattr(v, "values") else v
                scalar = getattr(first, "shape", None) is not None and first.shape.rank == 0
                return super(Strategy, self).reduce(reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(reduce_one, value)

    return Strategy()


def is_chief(strategy) -> bool:
    """True unless this is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def precision_policy(mixed: bool) -> str:
    """mixed_bfloat16 on CPU, mixed_float16 on GPU (tensor cores), float32 otherwise."""
    import tensorflow as tf

    if not mixed:
        return "float32"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def versions() -> dict:
    import keras
    import numpy
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }


def new_run_dir(args: argparse.Namespace) -> Path:
    """runs/NAME, created empty. A default name never clashes; an explicit one must be new."""
    runs = Path(args.runs_dir)
    name = args.name or time.strftime("%Y%m%d-%H%M%S")
    run_dir = runs / name
    if run_dir.exists():
        if "name" in args.explicit:
            raise TrainError(f"{run_dir} already exists: continue it with --resume {run_dir}, or choose another --name")
        n = 2
        while (runs / f"{name}-{n}").exists():
            n += 1
        run_dir = runs / f"{name}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def resume_config(args: argparse.Namespace) -> tuple[argparse.Namespace, dict]:
    """The stopped run's options and state; explicit options other than --epochs must agree."""
    run_dir = Path(args.resume)
    for needed in ("config.json", "state.json", "last.keras"):
        if not (run_dir / needed).is_file():
            raise TrainError(f"--resume {run_dir}: {needed} not found (is this a run folder written by train.py?)")
    saved = json.loads((run_dir / "config.json").read_text())["options"]
    for key in args.explicit:
        if key in FIXED_ON_RESUME and getattr(args, key) != saved[key]:
            raise TrainError(f"--{key.replace('_', '-')} cannot change on --resume: the run has {saved[key]!r}")
    resumed = argparse.Namespace(**{**saved, "explicit": args.explicit, "resume": str(run_dir)})
    for key in ("epochs", "verbose", "tensorboard", "fused_batchnorm", "precise_bn"):
        if key in args.explicit:
            setattr(resumed, key, getattr(args, key))
    return resumed, json.loads((run_dir / "state.json").read_text())


# ---------------------------------------------------------------------------- callbacks


def save_model_atomic(model, path: Path) -> None:
    """model.save to a hidden temporary .keras file, then rename: never a partial file."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_history(path: Path, rows: list[dict]) -> None:
    import io

    import images

    out = io.StringIO()
    writer = csv.DictWriter(out, HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(v) if k == "epoch" else f"{v:.6g}") for k, v in row.items() if k in HISTORY_FIELDS})
    images.write_atomic(path, out.getvalue().encode())


def plot_curves(history_csv: str | Path, path: str | Path | None = None):
    """Loss, accuracy, seed_iou and iou per epoch, train and val; returns the Figure.

    Args:
        history_csv: a run's history.csv.
        path: PNG to write (default: curves.png beside the CSV); written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import images

    history_csv = Path(history_csv)
    rows = read_history(history_csv)
    path = Path(path) if path else history_csv.with_name("curves.png")
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2))
    epochs = [r["epoch"] for r in rows]
    for ax, metric in zip(axes, METRICS, strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [r.get(prefix + metric, math.nan) for r in rows]
            ax.plot(epochs, values, style, marker="o", markersize=3, label="val" if prefix else "train")
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    tmp = images.tmp_name(path).with_suffix(".png")
    try:
        fig.savefig(tmp, dpi=80)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    plt.close(fig)
    return fig


def PreciseBN(batches, count: int):
    """A callback that runs ``model.recalibrate_batchnorm`` on ``count`` batches before each validation."""
    import keras

    import model as unet

    class Callback(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            unet.recalibrate_batchnorm(self.model, (next(batches) for _ in range(count)))

    return Callback()


def make_callbacks(run_dir: Path, state: dict, chief: bool, tensorboard: bool) -> list:
    """The run's bookkeeping: NaN guard, last/best checkpoints, history.csv, curves.png."""
    import keras

    class RunCheckpoint(keras.callbacks.Callback):
        """At each epoch end: last.keras, best.keras (by val_iou), history.csv, curves.png, state.json.

        Non-chief workers of a multi-worker run save to a scratch folder (every worker
        must take part in saving) and write nothing else.
        """

        def __init__(self):
            super().__init__()
            self.started = time.time()
            self.nan = None

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.time()

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.nan = (state["epochs_done"] + 1, batch + 1)
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            if self.nan or not math.isfinite(float(logs.get("loss", 0.0))):
                return  # keep the last good checkpoint
            target = run_dir if chief else run_dir / f".worker-{os.getpid()}"
            target.mkdir(exist_ok=True)
            save_model_atomic(self.model, target / "last.keras")
            val_iou = logs.get("val_iou", logs.get("iou"))
            improved = state["best_val_iou"] is None or val_iou > state["best_val_iou"]
            if improved:
                save_model_atomic(self.model, target / "best.keras")
            if not chief:
                return
            state.update(
                epochs_done=epoch + 1, iterations=int(self.model.optimizer.iterations.numpy()), step_in_epoch=0
            )
            if improved:
                state.update(best_val_iou=float(val_iou), best_epoch=epoch + 1)
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
            row["learning_rate"] = float(self.model.optimizer.learning_rate)
            row["seconds"] = time.time() - self.started
            history = [r for r in read_history(run_dir / "history.csv") if r["epoch"] <= epoch] + [row]
            write_history(run_dir / "history.csv", history)
            plot_curves(run_dir / "history.csv")
            write_json(run_dir / "state.json", state)

    callbacks = [RunCheckpoint()]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    return callbacks


def write_json(path: Path, obj) -> None:
    import images

    images.write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


# ---------------------------------------------------------------------------- training


def train(args: argparse.Namespace, extra_callbacks: list | None = None) -> dict:
    """Builds or resumes the run and fits it. Returns a summary dict.

    ``extra_callbacks`` lets tests stop a run part-way (as a Ctrl-C would).
    """
    import keras
    import tensorflow as tf

    import data
    import model as unet

    state = None
    if args.resume:
        args, state = resume_config(args)
    strategy = make_strategy(args.distribute)
    chief = is_chief(strategy)
    policy = precision_policy(args.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    try:
        data_dir = Path(args.data_dir)
        if args.demo and not all((data_dir / s / "images").is_dir() for s in ("train", "val", "test")):
            import coco

            print(f"building the built-in sample in {data_dir} (coco.py --sample)", flush=True)
            if coco.main(["--sample", "--out", str(data_dir)]) != 0:
                raise TrainError("could not build the built-in sample")
        try:
            # One seed for the run; a resumed run reseeds per epoch so its batches differ.
            keras.utils.set_random_seed(args.seed + (state["epochs_done"] if state else 0))
            train_pairs = data.load_split(data_dir / "train", args.image_size)
            train_ds = data.batches(
                train_pairs, args.batch_size, shuffle=True, seed=args.seed, repeat=True, augmented=args.augment
            )
            val_ds = data.make_dataset(data_dir / "val", args.image_size, args.batch_size)
        except data.DataError as e:
            raise TrainError(f"{e}") from None
        if args.validation_steps:
            val_ds = val_ds.take(args.validation_steps)
        if args.distribute == "multiworker":
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            train_ds, val_ds = train_ds.with_options(options), val_ds.with_options(options)

        if state is None:
            run_dir = new_run_dir(args) if chief else Path(args.runs_dir) / (args.name or "worker")
            state = {"epochs_done": 0, "iterations": 0, "step_in_epoch": 0, "best_val_iou": None, "best_epoch": None}
            config = {"options": {k: v for k, v in vars(args).items() if k not in ("explicit", "resume")}}
            config.update(versions=versions(), policy=policy, devices=strategy.num_replicas_in_sync)
            config.update(train_images=int(train_pairs.cardinality()))
            if chief:
                write_json(run_dir / "config.json", config)
                write_json(run_dir / "state.json", state)
            with strategy.scope():
                model = unet.compile_unet(
                    unet.build_unet((None, None, 3)),
                    learning_rate=args.learning_rate,
                    decay_steps=args.decay_steps,
                    decay_rate=args.decay_rate,
                    jit_compile=args.jit_compile,
                    loss=args.loss,
                    schedule=args.schedule,
                    total_steps=args.epochs * args.steps_per_epoch,
                    warmup_steps=args.warmup_steps,
                )
        else:
            run_dir = Path(args.resume)
            with strategy.scope():
                model = keras.saving.load_model(run_dir / "last.keras")
            state["step_in_epoch"] = (
                int(model.optimizer.iterations.numpy()) - state["epochs_done"] * args.steps_per_epoch
            )

        if getattr(args, "fused_batchnorm", False):
            unet.use_fused_batchnorm(model)
        print_config(args, run_dir, policy, strategy, state)
        callbacks = make_callbacks(run_dir, state, chief, args.tensorboard) + list(extra_callbacks or [])
        if args.precise_bn:
            unaugmented = data.batches(train_pairs, args.batch_size, shuffle=True, seed=args.seed + 1, repeat=True)
            callbacks.append(PreciseBN(iter(unaugmented), args.precise_bn))
        started = time.time()
        interrupted = False
        try:
            # An epoch cut short by Ctrl-C is finished first (its remaining steps only).
            if 0 < state["step_in_epoch"] < args.steps_per_epoch and state["epochs_done"] < args.epochs:
                model.fit(
                    train_ds,
                    validation_data=val_ds,
                    initial_epoch=state["epochs_done"],
                    epochs=state["epochs_done"] + 1,
                    steps_per_epoch=args.steps_per_epoch - state["step_in_epoch"],
                    callbacks=callbacks,
                    verbose=args.verbose,
                    shuffle=False,  # the dataset shuffles itself
                )
            if state["epochs_done"] < args.epochs and not callbacks[0].nan:
                model.fit(
                    train_ds,
                    validation_data=val_ds,
                    initial_epoch=state["epochs_done"],
                    epochs=args.epochs,
                    steps_per_epoch=args.steps_per_epoch,
                    callbacks=callbacks,
                    verbose=args.verbose,
                    shuffle=False,  # the dataset shuffles itself
                )
        except KeyboardInterrupt:
            interrupted = True
            if chief:
                save_model_atomic(model, run_dir / "last.keras")
                state["iterations"] = int(model.optimizer.iterations.numpy())
                state["step_in_epoch"] = state["iterations"] - state["epochs_done"] * args.steps_per_epoch
                write_json(run_dir / "state.json", state)
        summary = {
            "run_dir": str(run_dir),
            "seconds": time.time() - started,
            "interrupted": interrupted,
            "nan": callbacks[0].nan,
            "state": state,
            "chief": chief,
        }
        if not chief:  # the chief holds the run's files; drop this worker's scratch copies
            shutil.rmtree(run_dir / f".worker-{os.getpid()}", ignore_errors=True)
        if interrupted or callbacks[0].nan or not chief:
            return summary
        test_dir = data_dir / "test"
        if test_dir.is_dir() and (run_dir / "best.keras").is_file():
            summary["test"] = evaluate_best(run_dir, test_dir, args, demo_figure=args.demo)
        return summary
    finally:
        keras.mixed_precision.set_global_policy("float32")


def evaluate_best(run_dir: Path, test_dir: Path, args: argparse.Namespace, demo_figure: bool = False) -> dict:
    """Evaluates best.keras on the test split; writes test_metrics.json (and, for the demo, results.png)."""
    import results

    model = results.load_model(run_dir / "best.keras")
    predictor = results.Predictor(model, args.image_size)
    scores = results.evaluate(predictor, test_dir, args.batch_size)
    write_json(run_dir / "test_metrics.json", {**scores, "model": str(run_dir / "best.keras"), "split": str(test_dir)})
    if demo_figure:
        results.plot_split(predictor, test_dir, run_dir / "results.png", rows=8)
    return scores


def print_config(args, run_dir, policy, strategy, state) -> None:
    print("train.py configuration:")
    for key, value in vars(args).items():
        if key != "explicit":
            print(f"  {key:17} {value}")
    print(f"  {'run_dir':17} {run_dir}")
    print(f"  {'precision':17} {policy}")
    print(f"  {'replicas':17} {strategy.num_replicas_in_sync}")
    if args.resume:
        print(
            f"  resuming after epoch {state['epochs_done']}, step {state['iterations']} (+{state['step_in_epoch']} in the next epoch)"
        )
    sys.stdout.flush()


def print_summary(summary: dict) -> None:
    run_dir, state = summary["run_dir"], summary["state"]
    minutes = summary["seconds"] / 60
    if summary["nan"]:
        epoch, step = summary["nan"]
        saved = (
            f"{run_dir}/last.keras holds the last good epoch"
            if state["epochs_done"]
            else "no checkpoint was written (it happened in the first epoch)"
        )
        print(
            f"train.py: error: the loss became NaN at epoch {epoch}, step {step}; the run stopped; "
            f"{saved}. Try a lower --learning-rate.",
            file=sys.stderr,
        )
        return
    if summary["interrupted"]:
        print(
            f"interrupted after {minutes:.1f} min: saved {run_dir}/last.keras; continue with: python train.py --resume {run_dir}"
        )
        return
    if not summary["chief"]:
        print(f"worker done in {minutes:.1f} min; the chief worker writes {run_dir}")
        return
    best = state["best_val_iou"]
    print(f"done in {minutes:.1f} min: {state['epochs_done']} epochs, {state['iterations']} steps")
    if best is not None:
        print(f"  best val_iou {best:.4f} at epoch {state['best_epoch']}: {run_dir}/best.keras")
    if "test" in summary:
        t = summary["test"]
        print(
            f"  test ({t['images']} images): accuracy {t['accuracy']:.4f}, iou {t['iou']:.4f}, "
            f"seed_iou {t['seed_iou']:.4f} -> {run_dir}/test_metrics.json"
        )
    print(f"  history: {run_dir}/history.csv, curves: {run_dir}/curves.png")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        summary = train(args)
    except TrainError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    print_summary(summary)
    if summary["nan"]:
        return 1
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
