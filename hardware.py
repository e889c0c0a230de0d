"""What this machine's processor can do, the training precision that suits it, and the
tf.distribute strategy (the devices) a run trains on.

Mixed precision pays only where the hardware computes in 16 bits natively: float16 on a
GPU, bfloat16 on a CPU with the ``avx512_bf16`` or ``amx_bf16`` instructions (recent Intel
Xeons, AMD Zen 4 and later) or Arm's ``bf16`` extension. Elsewhere TensorFlow emulates
bfloat16 and training runs several times slower than in float32, so ``choose_precision``
falls back to float32 unless told to force it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

CPUINFO = Path("/proc/cpuinfo")  # Linux; tests point it at a fake file
# x86 flags (Linux names) and the Arm feature that mean bfloat16 arithmetic in hardware.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "bf16")
PRECISION_MODES = ("off", "auto", "force")


@dataclass(frozen=True)
class Cpu:
    """The processor's name and instruction-set flags; ``flags`` is None when unknown."""

    model: str
    flags: frozenset | None

    @property
    def native_bfloat16(self) -> bool | None:
        """True or False from the flags; None when the flags are unknown."""
        if self.flags is None:
            return None
        return any(flag in self.flags for flag in NATIVE_BFLOAT16_FLAGS)

    def describe(self) -> str:
        """'AMD EPYC (avx2 fma avx512f avx512_bf16)': the model and the flags that matter here."""
        if self.flags is None:
            return f"{self.model} (instruction flags unknown)"
        shown = [flag for flag in SHOWN_FLAGS if flag in self.flags]
        return f"{self.model} ({' '.join(shown) or 'none of ' + ', '.join(SHOWN_FLAGS)})"


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_info(cpuinfo: str | Path | None = None) -> Cpu:
    """Reads the processor's model and flags: /proc/cpuinfo on Linux, sysctl on macOS.

    Anything else (Windows, a missing or unreadable file) gives unknown flags, which
    ``choose_precision`` treats as "no native bfloat16".
    """
    path = Path(cpuinfo) if cpuinfo is not None else CPUINFO
    if path.is_file():
        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = ""
        fields = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        flags = fields.get("flags") or fields.get("features")  # x86, Arm
        model = fields.get("model name") or fields.get("hardware") or platform.processor() or "unknown CPU"
        return Cpu(model, frozenset(flags.split()) if flags is not None else None)
    if platform.system() == "Darwin":
        model = _sysctl("machdep.cpu.brand_string") or platform.processor() or "unknown CPU"
        bf16 = _sysctl("hw.optional.arm.FEAT_BF16")
        return Cpu(model, None if bf16 is None else frozenset({"bf16"} if bf16 == "1" else ()))
    return Cpu(platform.processor() or "unknown CPU", None)


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def choose_precision(mode: str, gpu: bool, cpu: Cpu) -> tuple[str, str]:
    """The Keras dtype policy for ``--mixed-precision MODE`` on this hardware, and why.

    Args:
        mode: 'off' (float32, the original), 'auto' (16-bit where the hardware has it) or
            'force' (16-bit even where it is emulated).
        gpu: whether training runs on a GPU.
        cpu: the processor, from ``cpu_info()``.

    Returns:
        (policy, reason): 'float32', 'mixed_float16' or 'mixed_bfloat16', and one line.
    """
    if mode not in PRECISION_MODES:
        raise ValueError(f"mixed precision must be one of {PRECISION_MODES}. Received: {mode!r}")
    if mode == "off":
        return "float32", "float32 (mixed precision off)"
    if gpu:
        return "mixed_float16", "mixed float16 on the GPU"
    if mode == "force":
        return "mixed_bfloat16", f"mixed bfloat16, forced (native bfloat16: {cpu.native_bfloat16}) on {cpu.describe()}"
    if cpu.native_bfloat16:
        return "mixed_bfloat16", f"mixed bfloat16: this CPU computes bfloat16 natively, {cpu.describe()}"
    why = "has no native bfloat16" if cpu.native_bfloat16 is False else "may lack native bfloat16 (unknown flags)"
    return "float32", (
        f"float32: this CPU {why} ({cpu.describe()}), so TensorFlow would emulate bfloat16 and train "
        "several times slower than in float32; use --mixed-precision force to use it anyway"
    )


@contextlib.contextmanager
def precision_policy(policy: str):
    """Sets Keras' global dtype policy for the block and restores the caller's afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def make_strategy(kind: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for ``--distribute KIND``: 'none', 'mirrored' or 'multiworker'."""
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if kind == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
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

    class Strategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def reduce_one(v):
                first = v.values[0] if hasattr(v, "values") else v
                scalar = getattr(first, "shape", None) is not None and first.shape.rank == 0
                return super(Strategy, self).reduce(reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(reduce_one, value)

    return Strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)
