"""metrics.py on hand-worked cases: per-image and pooled IoU, seed_iou, accuracy, empty masks."""

import keras
import numpy as np
import pytest

import metrics

E = np.zeros((3, 3))  # empty
F = np.ones((3, 3))  # full
LEFT = np.array([[1, 1, 0]] * 3, float)  # two columns: 6 pixels
RIGHT = np.array([[0, 1, 1]] * 3, float)
FIRST = np.array([[1, 0, 0]] * 3, float)
SOFT = np.where(LEFT > 0, 0.7, 0.2)  # right everywhere, but only 0.7 sure

# (name, truth, prediction, IoU of the thresholded prediction, the original's seed_iou)
IOU_CASES = [
    ("empty truth, empty prediction", E, E, 1.0, 0.0),  # nothing to find, nothing found
    ("empty truth, full prediction", E, F, 0.0, 0.0),
    ("full truth, empty prediction", F, E, 0.0, 0.0),
    ("full truth, full prediction", F, F, 1.0, 1.0),
    ("half overlap", LEFT, RIGHT, 3 / 9, 3 / 9),
    ("half found", LEFT, FIRST, 3 / 6, 3 / 6),
    ("soft, right side of 0.5", LEFT, SOFT, 1.0, 0.7 * 6 / 6),
    ("exactly 0.5 counts as person", LEFT, LEFT * 0.5, 1.0, 0.5),
]
IDS = [case[0] for case in IOU_CASES]


def batch(*masks):
    return np.stack([np.asarray(m, np.float32) for m in masks])[..., None]


@pytest.mark.parametrize("name, truth, pred, iou, seed", IOU_CASES, ids=IDS)
def test_per_image_iou(name, truth, pred, iou, seed):
    got = keras.ops.convert_to_numpy(metrics.per_image_iou(batch(truth), batch(pred)))
    assert got.shape == (1,)
    assert got[0] == pytest.approx(iou, abs=1e-6)


@pytest.mark.parametrize("name, truth, pred, iou, seed", IOU_CASES, ids=IDS)
def test_pooled_iou_of_one_image_is_its_iou(name, truth, pred, iou, seed):
    metric = metrics.PooledIoU()
    metric.update_state(batch(truth), batch(pred))
    assert float(metric.result()) == pytest.approx(iou, abs=1e-6)


@pytest.mark.parametrize("name, truth, pred, iou, seed", IOU_CASES, ids=IDS)
def test_seed_iou_is_the_original_formula(name, truth, pred, iou, seed):
    assert float(metrics.seed_iou(batch(truth), batch(pred))) == pytest.approx(seed, abs=1e-5)


def test_pooled_iou_pools_pixels_not_ratios():
    metric = metrics.PooledIoU()
    metric.update_state(batch(LEFT), batch(RIGHT))  # 3 / 9
    metric.update_state(batch(F), batch(F))  # 9 / 9
    metric.update_state(batch(E), batch(E))  # nothing: adds nothing
    assert float(metric.result()) == pytest.approx((3 + 9) / (9 + 9))
    metric.reset_state()
    assert float(metric.result()) == 1.0  # an empty evaluation: nothing to find


# Two hand-worked 3x3 batches (one image each). Batch 1: the thresholded prediction
# has TP=2, FP=2, FN=1 -> IoU 2/5; the seed formula gives soft intersection
# 0.9+0.4+0.8 = 2.1 over a hard union of 5 -> 0.42. Batch 2: the prediction is right
# everywhere but only 0.7 confident -> IoU 6/6 = 1, seed 4.2/6 = 0.7.
TRUE = batch([[1, 1, 0], [0, 1, 0], [0, 0, 0]], [[1, 1, 1], [1, 1, 1], [0, 0, 0]])
PRED = batch(
    [[0.9, 0.4, 0.6], [0.2, 0.8, 0.1], [0.0, 0.0, 0.7]],
    [[0.7, 0.7, 0.7], [0.7, 0.7, 0.7], [0.2, 0.2, 0.2]],
)


def evaluate_metrics(y_true, y_pred, batch_size):
    """Runs the training metrics through Keras' own evaluate loop on an identity model."""
    identity = keras.Sequential([keras.Input(y_pred.shape[1:]), keras.layers.Identity()])
    identity.compile(loss="binary_crossentropy", metrics=metrics.make_metrics())
    return identity.evaluate(y_pred, y_true, batch_size=batch_size, verbose=0, return_dict=True)


def test_training_metrics_on_one_hand_worked_batch():
    logs = evaluate_metrics(TRUE[:1], PRED[:1], batch_size=1)
    assert logs["iou"] == pytest.approx(2 / 5)
    assert logs["seed_iou"] == pytest.approx(2.1 / 5)  # differs from iou: soft intersection
    assert logs["accuracy"] == pytest.approx(6 / 9)


def test_training_metrics_accumulate_over_batches():
    logs = evaluate_metrics(TRUE, PRED, batch_size=1)
    # iou pools every pixel: (2 + 6) / (5 + 6), not the mean of 0.4 and 1.0.
    assert logs["iou"] == pytest.approx(8 / 11)
    # seed_iou is, as in the original, the mean of the per-batch ratios.
    assert logs["seed_iou"] == pytest.approx((0.42 + 0.7) / 2)
    assert logs["accuracy"] == pytest.approx(15 / 18)
    # One batch of two: the seed ratio is taken over the batch, iou is unchanged.
    logs = evaluate_metrics(TRUE, PRED, batch_size=2)
    assert logs["iou"] == pytest.approx(8 / 11)
    assert logs["seed_iou"] == pytest.approx((2.1 + 4.2) / 11)
    per_image = keras.ops.convert_to_numpy(metrics.per_image_iou(TRUE, PRED))
    np.testing.assert_allclose(per_image, [2 / 5, 1.0], rtol=1e-6)


def test_seed_iou_matches_the_formula_on_random_arrays():
    rng = np.random.default_rng(1)
    y_true = (rng.random((4, 8, 8, 1)) > 0.5).astype(np.float32)
    y_pred = rng.random((4, 8, 8, 1)).astype(np.float32)
    union = np.sum((y_true + (y_pred >= 0.5)) >= 1) + 1e-6
    expected = np.sum(y_true * y_pred) / union
    assert float(metrics.seed_iou(y_true, y_pred)) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------- full size


@pytest.mark.parametrize("name, truth, pred, iou, seed", IOU_CASES, ids=IDS)
def test_mask_iou_agrees_with_the_per_image_iou(name, truth, pred, iou, seed):
    assert metrics.mask_iou(truth >= 0.5, pred >= 0.5) == pytest.approx(iou)


def square(size, top, left, side):
    mask = np.zeros((size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_boundary_band_by_hand():
    band = metrics.boundary_band(square(9, 1, 1, 7), 2)  # a 7x7 square: its 3x3 core is not in the band
    assert band.sum() == 49 - 9 and not band[4, 4] and band[1, 1]
    assert metrics.boundary_band(np.ones((5, 5), bool), 1).sum() == 16  # the photo's border is an edge


def test_boundary_iou_weighs_the_outline():
    # 100x100 photo: a band of round(0.02 * 141.4) = 3 pixels.
    truth = square(100, 20, 20, 60)
    assert metrics.boundary_iou(truth, truth) == 1.0
    assert metrics.boundary_iou(np.zeros_like(truth), np.zeros_like(truth)) == 1.0
    assert metrics.boundary_iou(truth, np.zeros_like(truth)) == 0.0
    # Shifted by two pixels: the mask IoU hardly moves, the boundary IoU falls a lot.
    shifted = square(100, 22, 22, 60)
    assert metrics.mask_iou(truth, shifted) > 0.87
    band = metrics.boundary_band(truth, 3)
    moved = metrics.boundary_band(shifted, 3)
    assert metrics.boundary_iou(truth, shifted) == pytest.approx((band & moved).sum() / (band | moved).sum())
    assert metrics.boundary_iou(truth, shifted) < 0.6
