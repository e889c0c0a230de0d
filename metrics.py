"""How well a mask is predicted: the one definition of each metric, used everywhere.

    accuracy       pixels right after thresholding at 0.5 (Keras' BinaryAccuracy)
    iou            the standard IoU of the thresholded mask, TP / (TP + FP + FN), with the
                   counts pooled over every pixel of an evaluation (``PooledIoU``)
    seed_iou       the original project's formula, exactly (``seed_iou``)
    per-image IoU  the same as ``iou`` for each image on its own (``per_image_iou``)

Empty masks: when the true mask and the thresholded prediction are both empty there is
nothing to find and nothing was found, so the IoU is 1.0 (per image, and pooled when a
whole evaluation is empty); an empty truth with any predicted pixel scores 0.0. The
original's ``seed_iou`` keeps its own formula, which gives 0 there.

Training (``model.compile_unet``) and evaluation (``inference.evaluate``) both use these.
At a photo's full size (what results.py writes), ``mask_iou`` and ``boundary_iou`` score
NumPy masks with the same convention.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
from keras import ops

THRESHOLD = 0.5
# Registered under the names older checkpoints were saved with, so they still load.
PACKAGE = "background_remover"


def confusion(y_true, y_pred, axis=None) -> tuple:
    """(TP, FP, FN) of the mask thresholded at 0.5, summed over ``axis`` (None: all), float32."""
    truth = ops.cast(y_true, "float32") >= THRESHOLD
    pred = ops.cast(y_pred, "float32") >= THRESHOLD

    def count(a):
        return ops.sum(ops.cast(a, "float32"), axis=axis)

    return count(truth & pred), count(~truth & pred), count(truth & ~pred)


def iou_from_counts(tp, fp, fn):
    """TP / (TP + FP + FN), and 1.0 where that union is empty (see the module docstring)."""
    union = tp + fp + fn
    return ops.where(union > 0, tp / ops.maximum(union, 1.0), 1.0)


def per_image_iou(y_true, y_pred):
    """(batch, H, W, 1) truth and probabilities -> (batch,) IoU of each image."""
    return iou_from_counts(*confusion(y_true, y_pred, axis=(1, 2, 3)))


@keras.saving.register_keras_serializable(package=PACKAGE)
def seed_iou(y_true, y_pred):
    """The original project's IoU, exactly: soft intersection over hard union, per batch.

    intersection = sum(y_true * y_pred) with raw probabilities;
    union = count(y_true + (y_pred >= 0.5) >= 1) + 1e-6.
    Keras averages the per-batch ratios. This is not the standard IoU (see ``PooledIoU``):
    it is kept so that our figures compare with the original's published ~65%.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    intersection = ops.sum(y_true * y_pred)
    hard = ops.cast(y_pred >= THRESHOLD, "float32")
    union = ops.sum(ops.cast(y_true + hard >= 1.0, "float32")) + 1e-6
    return intersection / union


@keras.saving.register_keras_serializable(package=PACKAGE)
class PooledIoU(keras.metrics.Metric):
    """The standard IoU of the thresholded mask, with TP, FP and FN pooled over every pixel.

    Not the mean of per-batch ratios: a batch of large persons weighs what its pixels weigh.
    """

    def __init__(self, name: str = "iou", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.counts = [self.add_variable(shape=(), initializer="zeros", name=n) for n in ("tp", "fp", "fn")]

    def update_state(self, y_true, y_pred, sample_weight=None):
        for variable, value in zip(self.counts, confusion(y_true, y_pred), strict=True):
            variable.assign_add(ops.cast(value, variable.dtype))

    def result(self):
        return iou_from_counts(*self.counts)

    def reset_state(self):
        for variable in self.counts:
            variable.assign(0.0)


def make_metrics() -> list:
    """The training metrics: accuracy, seed_iou (the original's) and iou (pooled)."""
    # seed_iou as a metric object made here: given as a function, Keras would wrap it inside the first
    # traced training step, and a variable created there makes TensorFlow trace the whole step twice.
    return [
        keras.metrics.BinaryAccuracy(name="accuracy", threshold=THRESHOLD),
        keras.metrics.MeanMetricWrapper(seed_iou, name="seed_iou"),
        PooledIoU(name="iou"),
    ]


# ---------------------------------------------------------------------------- full size (NumPy)
# What a user sees: the alpha at the photo's full size, thresholded, against the hand-made mask.

BOUNDARY_RATIO = 0.02  # boundary IoU's band: 2% of the photo's diagonal (Cheng et al., CVPR 2021)


def mask_iou(truth: np.ndarray, pred: np.ndarray) -> float:
    """IoU of two boolean masks of one photo; 1.0 when both are empty (the module's convention)."""
    union = np.count_nonzero(truth | pred)
    return np.count_nonzero(truth & pred) / union if union else 1.0


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels of a boolean mask within ``width`` pixels of its edge (the photo's border counts as an edge)."""
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    inner = cv2.erode(padded, np.ones((2 * width + 1, 2 * width + 1), np.uint8))[1:-1, 1:-1]
    return mask & (inner == 0)


def boundary_iou(truth: np.ndarray, pred: np.ndarray, ratio: float = BOUNDARY_RATIO) -> float:
    """Boundary IoU (Cheng, Girshick, Dollar, Berg and Kirillov, CVPR 2021) of two boolean masks.

    The IoU of the two masks' bands of width ``ratio`` x the photo's diagonal inside their
    edges: it weighs the outline, where a mask upsampled from a small model loses most,
    whatever the person's size. 1.0 when both bands are empty.
    """
    width = max(1, round(ratio * float(np.hypot(*truth.shape[:2]))))
    return mask_iou(boundary_band(truth, width), boundary_band(pred, width))
