"""train.py: artifacts, resume, Ctrl-C, NaN, bad input and multi-device training, on tiny data."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--image-size", "64", "--batch-size", "4", "--steps-per-epoch", "3", "--verbose", "0"]


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def test_a_short_run_writes_every_artifact(tiny_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["--data-dir", tiny_data, "--runs-dir", runs, "--name", "r", "--epochs", "4", *TINY]
    assert train.main([str(a) for a in args]) == 0
    run = runs / "r"
    assert {p.name for p in run.iterdir()} == {
        "config.json", "state.json", "last.keras", "best.keras", "history.csv", "curves.png", "test_metrics.json"
    }  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["epochs"] == 4 and config["options"]["seed"] == 1
    assert config["versions"]["keras"] == keras.__version__ and config["train_images"] == 12
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss", "accuracy", "seed_iou", "iou", "val_loss", "val_iou", "learning_rate"} <= set(rows[0])
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < losses[0]  # the loss falls
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    test = json.loads((run / "test_metrics.json").read_text())
    assert set(test) >= {"accuracy", "iou", "seed_iou"} and test["images"] == 4
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 4 and state["iterations"] == 12
    best = max(rows, key=lambda r: float(r["val_iou"]))
    assert state["best_epoch"] == int(best["epoch"])
    out = capsys.readouterr().out
    assert out.count("train.py configuration:") == 1 and "test (4 images)" in out
    # The saved model is trained, compiled, at the right step.
    model = keras.saving.load_model(run / "last.keras")
    assert int(model.optimizer.iterations) == 12


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


def test_ctrl_c_saves_and_resume_continues_at_the_right_epoch_and_step(tiny_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = train.parse_args(
        [str(a) for a in ["--data-dir", tiny_data, "--runs-dir", runs, "--name", "r", "--epochs", "3", *TINY]]
    )
    summary = train.train(args, extra_callbacks=[StopAt(epoch=1, step=1)])  # 2nd step of the 2nd epoch
    assert summary["interrupted"]
    run = runs / "r"
    state = json.loads((run / "state.json").read_text())
    assert (state["epochs_done"], state["iterations"], state["step_in_epoch"]) == (1, 5, 2)
    assert int(keras.saving.load_model(run / "last.keras").optimizer.iterations) == 5
    assert [int(r["epoch"]) for r in history(run)] == [1]

    # Resuming: options come from config.json; epoch 2 finishes its last step, then epoch 3.
    assert train.main(["--resume", str(run), "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "resuming after epoch 1, step 5" in out
    state = json.loads((run / "state.json").read_text())
    assert (state["epochs_done"], state["iterations"]) == (3, 9)
    model = keras.saving.load_model(run / "last.keras")
    assert int(model.optimizer.iterations) == 9
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # the history continues
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.002)

    # A finished run can be extended; a fixed option cannot change.
    assert train.main(["--resume", str(run), "--batch-size", "8"]) == 2
    assert "--batch-size cannot change on --resume" in capsys.readouterr().err


def test_learning_rate_schedule_position_survives_resume(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    base = ["--data-dir", tiny_data, "--runs-dir", runs, *TINY, "--decay-steps", "2", "--decay-rate", "0.5"]
    args = train.parse_args([str(a) for a in [*base, "--name", "r", "--epochs", "2"]])
    train.train(args, extra_callbacks=[StopAt(epoch=1, step=0)])
    assert train.main(["--resume", str(runs / "r"), "--verbose", "0"]) == 0
    assert train.main([str(a) for a in [*base, "--name", "straight", "--epochs", "2"]]) == 0
    resumed, straight = history(runs / "r"), history(runs / "straight")
    # 6 steps, halving every 2 steps: 0.002 * 0.5**3 at the end, either way.
    assert float(resumed[-1]["learning_rate"]) == pytest.approx(0.002 * 0.5**3)
    assert float(straight[-1]["learning_rate"]) == pytest.approx(0.002 * 0.5**3)


def test_nan_loss_stops_with_a_clear_message(tiny_data, tmp_path, monkeypatch, capsys):
    import model as unet

    compile_unet = unet.compile_unet

    def compile_with_nan_loss(model, **kwargs):
        compile_unet(model, **kwargs)
        model.compile(
            optimizer=model.optimizer, loss=lambda y, p: keras.ops.mean(p) * np.nan, metrics=unet.make_metrics()
        )
        return model

    monkeypatch.setattr(unet, "compile_unet", compile_with_nan_loss)
    args = ["--data-dir", tiny_data, "--runs-dir", tmp_path, "--name", "r", "--epochs", "2", *TINY]
    assert train.main([str(a) for a in args]) == 1
    err = capsys.readouterr().err
    assert "the loss became NaN at epoch 1, step 1" in err and "no checkpoint was written" in err
    assert not (tmp_path / "r" / "last.keras").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image-size", "100"], "--image-size must be a positive multiple of 32"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--distribute", "ring"], "invalid choice: 'ring'"),
    ],
)
def test_bad_option_values_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_data_says_what_to_run(tmp_path, make, capsys):
    data_dir = tmp_path / "data"
    if make == "empty":
        for kind in ("images", "masks"):
            (data_dir / "train" / kind).mkdir(parents=True)
    assert train.main(["--data-dir", str(data_dir), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "python coco.py" in err and "--demo" in err
    assert not (tmp_path / "runs").exists()


def test_an_existing_run_name_is_never_overwritten(tiny_data, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "mine.txt").write_text("keep")
    args = ["--data-dir", tiny_data, "--runs-dir", tmp_path, "--name", "r", *TINY]
    assert train.main([str(a) for a in args]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "r" / "mine.txt").read_text() == "keep"


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
    out = run_script(
        code,
        "--data-dir",
        tiny_data,
        "--runs-dir",
        tmp_path,
        "--name",
        "m",
        "--distribute",
        "mirrored",
        "--epochs",
        "2",
        *TINY,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["devices"] == 2
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
    args = [
        "--data-dir",
        tiny_data,
        "--runs-dir",
        tmp_path,
        "--name",
        "w",
        "--distribute",
        "multiworker",
        "--epochs",
        "2",
        *TINY,
    ]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": tf_config}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code, *map(str, args)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    config = json.loads((tmp_path / "w" / "config.json").read_text())
    assert config["devices"] == 2
    assert [int(r["epoch"]) for r in history(tmp_path / "w")] == [1, 2]
    assert (tmp_path / "w" / "best.keras").is_file()
    assert not list((tmp_path / "w").glob(".worker-*")), "a worker's scratch folder was left behind"


def test_improved_recipe_options(tiny_data, tmp_path):
    args = ["--data-dir", tiny_data, "--runs-dir", tmp_path, "--name", "i", "--epochs", "3", *TINY]
    args += ["--augment", "--loss", "bce_dice", "--schedule", "cosine", "--warmup-steps", "2"]
    args += ["--mixed-precision", "--fused-batchnorm", "--precise-bn", "2"]
    assert train.main([str(a) for a in args]) == 0
    options = json.loads((tmp_path / "i" / "config.json").read_text())["options"]
    assert options["augment"] and options["loss"] == "bce_dice" and options["schedule"] == "cosine"
    rates = [float(r["learning_rate"]) for r in history(tmp_path / "i")]
    assert rates[-1] == pytest.approx(0.0, abs=1e-9) and rates[0] > rates[1] > 0  # the cosine reaches 0
    model = keras.saving.load_model(tmp_path / "i" / "best.keras")
    assert model.loss.__name__ == "bce_dice"
    assert json.loads((tmp_path / "i" / "test_metrics.json").read_text())["images"] == 4


def test_cosine_warmup_must_fit_in_the_run(capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(["--schedule", "cosine", "--warmup-steps", "50", "--epochs", "1", "--steps-per-epoch", "50"])
    assert e.value.code == 2 and "--warmup-steps must be" in capsys.readouterr().err


def test_a_shortened_demo_shortens_its_warmup():
    args = train.parse_args(["--demo", "--epochs", "1", "--steps-per-epoch", "3"])
    assert args.schedule == "cosine" and args.warmup_steps == 0 and args.data_dir == "data-sample"
    assert train.parse_args(["--demo"]).warmup_steps == train.DEMO["warmup_steps"]


def test_precise_bn_needs_a_single_process(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--precise-bn", "4", "--distribute", "mirrored"])
    assert "--precise-bn works without --distribute only" in capsys.readouterr().err
