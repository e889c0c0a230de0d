"""train.py and config.py: the config, artifacts, resume, Ctrl-C, NaN, precision, bad input and multi-device training.

Every run here trains a network at filter_scale 0.25 (1/16 of the original's compute) on
tiny data: what is tested is the bookkeeping, not the filters (test_model.py keeps 1.0).
"""

import csv
import dataclasses
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import data
import hardware
import images
import model as unet
import train
from config import DEMO, ConfigError, TrainConfig, make_parser, parse_args, read_config

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(image_size=64, batch_size=4, steps_per_epoch=3, verbose=0, filter_scale=0.25)
TINY_ARGV = [
    "--image-size", "64", "--batch-size", "4", "--steps-per-epoch", "3", "--verbose", "0", "--filter-scale", "0.25",
]  # fmt: skip
SLOW_CPU = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
FAST_CPU = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16\n"


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def tiny_config(tiny_data, runs, **changes):
    return TrainConfig(data_dir=str(tiny_data), runs_dir=str(runs), **{**TINY, **changes})


# ---------------------------------------------------------------------------- the config


def test_defaults_are_the_original_recipe():
    c = TrainConfig()
    assert (c.epochs, c.steps_per_epoch, c.batch_size, c.learning_rate) == (50, 300, 32, 0.002)
    assert (c.image_size, c.filter_scale, c.seed, c.validation_steps) == (128, 1.0, 1, 10)
    assert (c.decay_steps, c.decay_rate, c.schedule, c.loss) == (300, 0.98, "exponential", "bce")
    assert (c.mixed_precision, c.augment, c.precise_bn, c.fused_batchnorm) == ("off", False, 0, False)
    assert c.learning_rate == unet.LEARNING_RATE and c.decay_steps == unet.DECAY_STEPS
    config, resume_dir, given = parse_args([])
    assert config == c and resume_dir is None and given == {}


def test_every_option_is_on_the_command_line():
    parser = make_parser()
    flags = {s for action in parser._actions for s in action.option_strings}
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in flags, f.name
    config, _, given = parse_args(
        ["--filter-scale", "0.5", "--augment", "--mixed-precision", "--schedule", "cosine", "--no-fused-batchnorm"]
    )
    assert (config.filter_scale, config.augment, config.mixed_precision) == (0.5, True, "auto")
    assert config.schedule == "cosine"
    assert given == {
        "filter_scale": 0.5,
        "augment": True,
        "mixed_precision": "auto",
        "schedule": "cosine",
        "fused_batchnorm": False,
    }
    assert parse_args(["--mixed-precision", "force"])[0].mixed_precision == "force"


def test_config_round_trips_and_old_configs_load():
    c = TrainConfig(filter_scale=0.5, augment=True, name="x")
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    # A config.json written before the filter scale (first called width) and precision modes existed (a real one).
    old = json.loads((ROOT / "tests" / "data" / "config_v1.json").read_text())["options"]
    assert "width" not in old and old["mixed_precision"] is True and "demo" in old
    loaded = TrainConfig.from_dict(old)
    assert loaded.filter_scale == 1.0 and loaded.mixed_precision == "auto" and loaded.precise_bn == 1
    with pytest.raises(ConfigError, match="unknown option"):
        TrainConfig.from_dict({**old, "colour": "red"})


def test_composite_shares_per_source_and_older_configs():
    config, _, _ = parse_args(
        ["--data-dir", "a", "b", "--augment", "--composite", "0.9", "0.2", "--backgrounds", "x", "y/z", "--scenes"]
    )
    assert config.composite_shares == (0.9, 0.2) and config.backgrounds == ("x", "y/z") and config.scenes
    one = TrainConfig(data_dir=("a", "b", "c"), augment=True, composite=0.3, backgrounds="bg")
    assert one.composite_shares == (0.3, 0.3, 0.3) and one.backgrounds == ("bg",)
    assert TrainConfig().composite_shares == (0.0,) and TrainConfig().backgrounds == ()
    # config.json before several shares and folders: one number, one folder (or null).
    assert TrainConfig.from_dict({"augment": True, "composite": 0.3, "backgrounds": "bg"}) == one.replace(
        data_dir="data"
    )
    assert TrainConfig.from_dict({"composite": 0.0, "backgrounds": None}) == TrainConfig()


def test_the_old_name_width_still_sets_the_filter_scale(capsys):
    # --width and config.json's "width" were the filter scale's name before it was left to the images' width.
    config, _, given = parse_args(["--width", "0.5"])
    assert config.filter_scale == 0.5 and given == {"filter_scale": 0.5}
    assert TrainConfig.from_dict({"width": 0.5}) == TrainConfig(filter_scale=0.5)
    with pytest.raises(ConfigError, match="width is now filter_scale"):
        TrainConfig().replace(width=0.5)
    help = " ".join(make_parser().format_help().split())
    assert "--width FILTER_SCALE deprecated: the old name of --filter-scale" in help


def test_demo_is_a_preset_where_explicit_options_win(tmp_path):
    config, _, given = parse_args(["--demo", "--epochs", "2", "--runs-dir", str(tmp_path)])
    assert config == DEMO.replace(epochs=2, runs_dir=str(tmp_path)) and given == {
        "epochs": 2,
        "runs_dir": str(tmp_path),
    }
    assert config.filter_scale < 1 and config.data_dir == ("data-sample",) and config.name == "demo"
    (tmp_path / "demo").mkdir()  # a second demo does not overwrite the first
    assert parse_args(["--demo", "--runs-dir", str(tmp_path)])[0].name == "demo-2"


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--image-size", "100"],
            r"--image-size: the height and width must be positive multiples of 32 .* Received: --image-size=100$",
        ),
        (
            ["--augment", "--crop-from", "200"],
            r"--crop-from: the height and width must be 0 \(as stored\) or positive multiples of 32",
        ),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--filter-scale", "0"], r"--filter-scale must be in \(0, 4\]\. Received: 0\.0$"),
        (["--width", "5"], r"--filter-scale must be in \(0, 4\]"),  # the old name, the new name in the message
        (["--distribute", "ring"], "invalid choice: 'ring'"),
        (["--mixed-precision", "always"], "invalid choice: 'always'"),
        (
            ["--schedule", "cosine", "--warmup-steps", "50", "--epochs", "1", "--steps-per-epoch", "50"],
            "--warmup-steps",
        ),
        (["--precise-bn", "4", "--distribute", "mirrored"], "--precise-bn works without --distribute only"),
        (["--crop-from", "256"], "--crop-from needs --augment"),
        (["--augment", "--crop-from", "96", "--image-size", "128"], "at least --image-size"),
        (["--data-dir", "a", "b", "--weights", "1"], r"--weights needs one positive weight per --data-dir \(2\)"),
        (["--data-dir", "a", "--weights", "0"], "--weights needs one positive weight"),
        (
            ["--augment", "--composite", "0.5"],
            "--composite must be a share in .0, 1. and needs --augment and --backgrounds",
        ),
        (["--augment", "--composite", "1.5", "--backgrounds", "bg"], "--composite must be a share"),
        (["--backgrounds", "bg"], "--backgrounds and --cutouts are for --composite"),
        (
            ["--data-dir", "a", "b", "--augment", "--composite", "0.5", "0.5", "0.5", "--backgrounds", "bg"],
            r"one for all sources or one per --data-dir \(2\)\. Received: \[0\.5, 0\.5, 0\.5\]$",
        ),
        (["--augment", "--composite", "--backgrounds", "bg"], r"one per --data-dir \(1\)\. Received: \[\]$"),
        (["--scenes"], "--scenes is for --composite"),
    ],
)
def test_bad_option_values_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("train.py: error:")
    assert re.search(message, err[-1])


def test_bad_values_from_python_are_errors_too():
    with pytest.raises(ConfigError, match="--loss must be one of"):
        TrainConfig(loss="dice")


# ---------------------------------------------------------------------------- precision


def test_precision_follows_the_processor(tmp_path):
    slow, fast = tmp_path / "slow", tmp_path / "fast"
    slow.write_text(SLOW_CPU)
    fast.write_text(FAST_CPU)
    slow_cpu, fast_cpu = hardware.cpu_info(slow), hardware.cpu_info(fast)
    assert slow_cpu.model == "AMD EPYC" and slow_cpu.native_bfloat16 is False and fast_cpu.native_bfloat16 is True
    assert "avx512_bf16" in fast_cpu.describe() and "avx2" in slow_cpu.describe()
    choose = hardware.choose_precision
    assert choose("auto", False, fast_cpu)[0] == "mixed_bfloat16"
    policy, reason = choose("auto", False, slow_cpu)
    assert policy == "float32" and "no native bfloat16" in reason and "--mixed-precision force" in reason
    assert choose("force", False, slow_cpu)[0] == "mixed_bfloat16"
    assert choose("auto", True, slow_cpu)[0] == "mixed_float16"  # a GPU: float16
    assert choose("off", True, fast_cpu)[0] == "float32"
    assert choose("auto", False, hardware.cpu_info(tmp_path / "none"))[0] in ("float32", "mixed_bfloat16")


def test_mixed_precision_on_a_cpu_without_bfloat16_trains_in_float32(tiny_data, tmp_path, monkeypatch, capsys):
    (tmp_path / "cpuinfo").write_text(SLOW_CPU)
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "cpuinfo")
    keras.mixed_precision.set_global_policy("mixed_float16")  # the caller's policy
    try:
        config = tiny_config(tiny_data, tmp_path / "runs", name="r", epochs=1, mixed_precision="auto")
        summary = train.train(config)
        assert keras.mixed_precision.global_policy().name == "mixed_float16"  # restored
    finally:
        keras.mixed_precision.set_global_policy("float32")
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("train.py: note: --mixed-precision")]
    assert len(notes) == 1 and "no native bfloat16" in notes[0]
    saved = json.loads((summary.run_dir / "config.json").read_text())
    assert saved["precision"] == "float32" and "no native bfloat16" in saved["precision_reason"]
    assert saved["options"]["mixed_precision"] == "auto" and "avx2" in saved["cpu"]
    model = keras.saving.load_model(summary.run_dir / "last.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


# ---------------------------------------------------------------------------- runs


def test_a_short_run_writes_every_artifact(tiny_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["--data-dir", str(tiny_data), "--runs-dir", str(runs), "--name", "r", "--epochs", "4", *TINY_ARGV]
    assert train.main(argv) == 0
    run = runs / "r"
    assert {p.name for p in run.iterdir()} == {
        "config.json", "state.json", "last.keras", "best.keras", "history.csv", "curves.png",
        "test_metrics.json", "test_predictions.png",
    }  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert TrainConfig.from_dict(config["options"]) == tiny_config(tiny_data, runs, name="r", epochs=4)
    assert config["versions"]["keras"] == keras.__version__ and config["train_images"] == 12
    assert config["precision"] == "float32"
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss", "accuracy", "seed_iou", "iou", "val_loss", "val_iou", "learning_rate"} <= set(rows[0])
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < losses[0]  # the loss falls
    for png in ("curves.png", "test_predictions.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG"
    test = json.loads((run / "test_metrics.json").read_text())
    assert set(test) >= {"accuracy", "iou", "seed_iou"} and test["images"] == 4
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 4 and state["iterations"] == 12
    best = max(rows, key=lambda r: float(r["val_iou"]))
    assert state["best_epoch"] == int(best["epoch"])
    out = capsys.readouterr().out
    assert out.count("train.py configuration:") == 1 and "test (4 images)" in out
    # The saved model is trained, compiled, at the right step, at the chosen filter scale.
    model = keras.saving.load_model(run / "last.keras")
    assert int(model.optimizer.iterations) == 12
    assert model.count_params() == unet.build_unet(filter_scale=0.25).count_params()


class StopAt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt after a given step of a given epoch, like a Ctrl-C."""

    def __init__(self, epoch, step):
        super().__init__()
        self.epoch, self.step, self.current = epoch, step, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.step):
            raise KeyboardInterrupt


def test_ctrl_c_saves_and_resume_continues_at_the_right_epoch_step_and_rate(tiny_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    decay = dict(decay_steps=2, decay_rate=0.5)
    config = tiny_config(tiny_data, runs, name="r", epochs=3, **decay)
    summary = train.train(config, callbacks=[StopAt(epoch=1, step=1)])  # 2nd step of the 2nd epoch
    assert summary.interrupted
    run = runs / "r"
    state = json.loads((run / "state.json").read_text())
    assert (state["epochs_done"], state["iterations"], state["step_in_epoch"]) == (1, 5, 2)
    assert int(keras.saving.load_model(run / "last.keras").optimizer.iterations) == 5
    assert [int(r["epoch"]) for r in history(run)] == [1]

    # Resuming: options come from config.json; epoch 2 finishes its last step, then epoch 3.
    assert train.main(["--resume", str(run), "--verbose", "0"]) == 0
    assert re.search(r"resuming +after epoch 1, step 5", capsys.readouterr().out)
    state = json.loads((run / "state.json").read_text())
    assert (state["epochs_done"], state["iterations"]) == (3, 9)
    assert int(keras.saving.load_model(run / "last.keras").optimizer.iterations) == 9
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # the history continues
    # The schedule kept its position: 9 steps, halving every 2 steps.
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.002 * 0.5)
    assert float(rows[-1]["learning_rate"]) == pytest.approx(0.002 * 0.5**4)

    # A finished run can be extended (and config.json says so); a fixed option cannot change.
    assert train.resume(run, epochs=4).state["epochs_done"] == 4
    assert json.loads((run / "config.json").read_text())["options"]["epochs"] == 4
    assert train.main(["--resume", str(run), "--batch-size", "8"]) == 2
    assert "--batch-size cannot change on --resume" in capsys.readouterr().err


def stopped_run(config_json: Path, tiny_data, runs: Path) -> Path:
    """A run folder stopped after its first epoch (2 steps) whose config.json is ``config_json``."""
    old = json.loads(config_json.read_text())
    run = runs / "old"
    run.mkdir(parents=True)
    # As written then, with this test's paths; the model below is narrow only to keep the test fast.
    old["options"].update(data_dir=str(tiny_data), runs_dir=str(runs), image_size=64)
    (run / "config.json").write_text(json.dumps(old))
    (run / "state.json").write_text(
        json.dumps({"epochs_done": 1, "iterations": 2, "step_in_epoch": 0, "best_val_iou": 0.5, "best_epoch": 1})
    )
    model = unet.build_unet((None, None, 3), filter_scale=0.25)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=[keras.metrics.BinaryIoU([1], name="iou")])
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(2)  # 2 steps, as state.json says (a fit would take seconds to trace)
    model.save(run / "last.keras")
    return run


def test_a_run_folder_from_before_the_config_resumes(tiny_data, tmp_path):
    """config.json as the first release wrote it (no filter scale, mixed_precision a flag, a demo key)."""
    run = stopped_run(ROOT / "tests" / "data" / "config_v1.json", tiny_data, tmp_path / "runs")
    summary = train.resume(run, epochs=2, verbose=0)
    assert summary.state["epochs_done"] == 2 and summary.state["iterations"] == 2 + 2
    assert json.loads((run / "config.json").read_text())["options"]["mixed_precision"] == "auto"


def test_a_run_folder_from_before_filter_scale_resumes(tiny_data, tmp_path):
    """config.json as train.py wrote it before the rename (a real one): the filter scale's key was "width"."""
    assert json.loads((ROOT / "tests" / "data" / "config_v2.json").read_text())["options"]["width"] == 0.25
    run = stopped_run(ROOT / "tests" / "data" / "config_v2.json", tiny_data, tmp_path / "runs")
    assert train.main(["--resume", str(run), "--epochs", "2"]) == 0
    state = json.loads((run / "state.json").read_text())
    assert (state["epochs_done"], state["iterations"]) == (2, 2 + 2)
    options = json.loads((run / "config.json").read_text())["options"]
    assert options["filter_scale"] == 0.25 and "width" not in options


def test_nan_loss_stops_with_a_clear_message(tiny_data, tmp_path, monkeypatch, capsys):
    compile_unet = unet.compile_unet

    def compile_with_nan_loss(model, **kwargs):
        compile_unet(model, **kwargs)
        model.compile(optimizer=model.optimizer, loss=lambda y, p: keras.ops.mean(p) * np.nan)
        return model

    monkeypatch.setattr(unet, "compile_unet", compile_with_nan_loss)
    argv = ["--data-dir", str(tiny_data), "--runs-dir", str(tmp_path), "--name", "r", "--epochs", "2", *TINY_ARGV]
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    assert "the loss became NaN at epoch 1, step 1" in err and "no checkpoint was written" in err
    assert not (tmp_path / "r" / "last.keras").exists()


@pytest.mark.parametrize(
    "fails_at, note",
    [
        (1, "no checkpoint was written yet"),
        (2, "the last good checkpoint is {run}/last.keras from epoch 1"),
    ],
)
def test_a_full_disk_stops_with_one_line_naming_the_last_good_checkpoint(
    tiny_data, tmp_path, monkeypatch, capsys, fails_at, note
):
    save, saves = keras.Model.save, []

    def save_on_a_full_disk(model, path, *args, **kwargs):
        if Path(path).name.startswith(".last"):
            saves.append(path)
            if len(saves) == fails_at:  # this epoch's last.keras: half written, then the disk is full
                Path(path).write_bytes(b"PK\x03\x04 half a zip")
                raise OSError(errno.ENOSPC, "No space left on device")
        return save(model, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save_on_a_full_disk)
    argv = ["--data-dir", str(tiny_data), "--runs-dir", str(tmp_path), "--name", "r", "--epochs", "2", *TINY_ARGV]
    assert train.main(argv) == 1
    run = tmp_path / "r"
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"train.py: error: cannot write {run}/last.keras: No space left on device; {note.format(run=run)}"]
    assert [p.name for p in run.rglob(".*")] == []  # no temporary file left
    assert json.loads((run / "state.json").read_text())["epochs_done"] == fails_at - 1
    if fails_at > 1:  # the last good checkpoint is whole: it loads
        assert keras.saving.load_model(run / "last.keras").optimizer.iterations == 3 * (fails_at - 1)
    else:
        assert not (run / "last.keras").exists()


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_data_says_what_to_run(tmp_path, make, capsys):
    data_dir = tmp_path / "data"
    if make == "empty":
        for kind in ("images", "masks"):
            (data_dir / "train" / kind).mkdir(parents=True)
    assert train.main(["--data-dir", str(data_dir), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "python coco.py" in err and "--sample" in err
    assert not (tmp_path / "runs").exists()


def test_an_existing_run_name_is_never_overwritten(tiny_data, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "mine.txt").write_text("keep")
    argv = ["--data-dir", str(tiny_data), "--runs-dir", str(tmp_path), "--name", "r", *TINY_ARGV]
    assert train.main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "r" / "mine.txt").read_text() == "keep"


# ---------------------------------------------------------------------------- improved-recipe options


class BatchNormSpy(keras.callbacks.Callback):
    """Records, at the end of training, which BatchNormalization layers run the fused kernel."""

    def on_train_end(self, logs=None):
        norms = [layer for layer in self.model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        self.fused = [getattr(n.call, "__func__", None) is unet._fused_batchnorm_call for n in norms]


def test_improved_recipe_options_take_effect(tiny_data, tmp_path, monkeypatch):
    recalibrate, recalibrated = unet.recalibrate_batchnorm, []

    def spy(model, batches):  # --precise-bn: what train.Validation re-estimated, epoch by epoch
        recalibrated.append(recalibrate(model, batches))
        statistics = {v.path: keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables}
        recalibrated.append({path: value for path, value in statistics.items() if "moving_" in path})
        return recalibrated[-2]

    monkeypatch.setattr(unet, "recalibrate_batchnorm", spy)
    config = tiny_config(
        tiny_data, tmp_path, name="i", epochs=3, augment=True, loss="bce_dice", schedule="cosine",
        warmup_steps=2, mixed_precision="force", fused_batchnorm=True, precise_bn=2,
    )  # fmt: skip
    batchnorm = BatchNormSpy()
    summary = train.train(config, callbacks=[batchnorm])
    rates = [float(r["learning_rate"]) for r in history(tmp_path / "i")]
    assert rates[-1] == pytest.approx(0.0, abs=1e-9) and rates[0] > rates[1] > 0  # the cosine reaches 0
    model = keras.saving.load_model(tmp_path / "i" / "best.keras")
    assert model.loss.__name__ == "bce_dice"
    assert model.get_layer("down1_conv1").dtype_policy.name == "mixed_bfloat16"  # forced
    assert summary.test["images"] == 4
    # --fused-batchnorm: every BatchNormalization layer of the trained model ran TensorFlow's fused kernel.
    assert len(batchnorm.fused) == 20 and all(batchnorm.fused)
    # --precise-bn 2: before each of the 3 validations, the statistics were re-estimated on 2 batches,
    # and the checkpoint written after the last one holds the re-estimated statistics.
    assert recalibrated[::2] == [2, 2, 2]
    last = keras.saving.load_model(tmp_path / "i" / "last.keras")
    saved = {v.path: keras.ops.convert_to_numpy(v) for v in last.non_trainable_variables if "moving_" in v.path}
    assert saved.keys() == recalibrated[-1].keys() and len(saved) == 40
    for path, value in saved.items():
        np.testing.assert_allclose(value, recalibrated[-1][path], rtol=1e-6, err_msg=path)


def test_augment_changes_the_training_batches_only(tiny_data, tmp_path):
    plain = data.for_training(tiny_config(tiny_data, tmp_path), 0)
    augmented = data.for_training(tiny_config(tiny_data, tmp_path, augment=True), 0)
    x_plain, y_plain = next(iter(plain.train))
    x_aug, y_aug = next(iter(augmented.train))
    assert x_plain.shape == x_aug.shape and y_plain.shape == y_aug.shape
    assert not np.array_equal(x_plain, x_aug) and not np.array_equal(y_plain, y_aug)
    for a, b in zip(*(next(iter(d.val.values())) for d in (plain, augmented)), strict=True):  # never augmented
        assert np.array_equal(a[0], b[0])
    cropped = data.for_training(tiny_config(tiny_data, tmp_path, augment=True, crop_from=128, precise_bn=1), 0)
    x_crop, y_crop = next(iter(cropped.train))  # read at 128, cropped, shrunk to the model's 64
    assert x_crop.shape == x_plain.shape and y_crop.shape == y_plain.shape
    assert next(cropped.calibration)[0].shape == x_plain.shape  # precise BN sees whole photos at 64
    for a, b in zip(*(next(iter(d.val.values())) for d in (plain, cropped)), strict=True):
        assert np.array_equal(a[0], b[0])


def test_precise_bn_changes_the_moving_statistics_and_nothing_else(tiny_data, tmp_path):
    datasets = data.for_training(tiny_config(tiny_data, tmp_path, precise_bn=2), 0)
    model = train.build_model(tiny_config(tiny_data, tmp_path), hardware.make_strategy("none"))
    model.fit(datasets.train, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    before = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    iterations = int(model.optimizer.iterations)
    callback = train.Validation(datasets.val, datasets.calibration, 2, verbose=0)
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert set(logs) == {"val_loss", "val_accuracy", "val_seed_iou", "val_iou"}
    after = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    moving = {v.path for v in model.non_trainable_variables if "moving_" in v.path}
    assert changed and changed <= moving  # only BatchNorm moving statistics changed
    assert int(model.optimizer.iterations) == iterations
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout) and layer.rate]  # restored


def test_several_sources_with_composites_are_validated_and_tested_one_by_one(tiny_data, tmp_path):
    second = tmp_path / "portraits"
    shutil.copytree(tiny_data, second)
    for path in (second / "train" / "images").iterdir():  # another kind of photo: inverted brightness
        path.write_bytes(images.encode(255 - images.read_rgb(path), ".png"))
    backgrounds = tmp_path / "backgrounds"
    backgrounds.mkdir()
    for i in range(3):
        (backgrounds / f"b{i}.png").write_bytes(images.encode(np.full((50, 70, 3), 40 * i, np.uint8), ".png"))
    config = tiny_config(tiny_data, tmp_path / "runs").replace(
        data_dir=(str(tiny_data), str(second)), weights=(1.0, 3.0), epochs=2, augment=True, composite=(0.5, 1.0),
        backgrounds=str(backgrounds), cutouts=str(tiny_data), scenes=True, name="mixed", verbose=1,
    )  # fmt: skip
    summary = train.train(config)
    run = summary.run_dir
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:  # each source's val_iou, and their mean as the val_iou that picks best.keras
        assert float(r["val_iou"]) == pytest.approx((float(r["val_data_iou"]) + float(r["val_portraits_iou"])) / 2)
    tests = json.loads((run / "test_metrics.json").read_text())["sources"]
    assert set(tests) == {"data", "portraits"} and tests["portraits"]["images"] == 4
    assert summary.test["sources"]["data"]["iou"] == tests["data"]["iou"]
    options = json.loads((run / "config.json").read_text())["options"]
    assert options["data_dir"] == [str(tiny_data), str(second)] and options["weights"] == [1.0, 3.0]
    assert options["composite"] == [0.5, 1.0] and options["backgrounds"] == [str(backgrounds)] and options["scenes"]
    assert json.loads((run / "config.json").read_text())["train_images_per_source"] == {"data": 12, "portraits": 12}
    assert read_config(run) == config  # config.json's lists read back as the options they were


# ---------------------------------------------------------------------------- several devices


def run_script(code, *args, env=None, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )


def test_mirrored_training_on_two_logical_cpus(tiny_data, tmp_path):
    code = (
        "import sys, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "import train\n"
        "sys.exit(train.main(sys.argv[1:]))\n"
    )
    argv = ["--data-dir", tiny_data, "--runs-dir", tmp_path, "--name", "m", "--distribute", "mirrored"]
    out = run_script(code, *argv, "--epochs", "2", *TINY_ARGV)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["devices"] == 2
    assert [int(r["epoch"]) for r in history(tmp_path / "m")] == [1, 2]
    assert (tmp_path / "m" / "best.keras").is_file()


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multiworker_training_with_two_local_workers(tiny_data, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    code = "import sys, train\nsys.exit(train.main(sys.argv[1:]))\n"
    argv = ["--data-dir", tiny_data, "--runs-dir", tmp_path, "--name", "w", "--distribute", "multiworker"]
    argv = [str(a) for a in [*argv, "--epochs", "2", *TINY_ARGV]]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": tf_config}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code, *argv],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    assert json.loads((tmp_path / "w" / "config.json").read_text())["devices"] == 2
    assert [int(r["epoch"]) for r in history(tmp_path / "w")] == [1, 2]
    assert (tmp_path / "w" / "best.keras").is_file()
    assert not list((tmp_path / "w").glob(".worker-*")), "a worker's scratch folder was left behind"
    shutil.rmtree(tmp_path / "w")
