"""results.py on videos the tests write, and video.py's reading, writing and smoothing."""

import cv2
import numpy as np
import pytest

import compose
import images
import inference
import results
import video
from conftest import brightness_model

FRAMES, HEIGHT, WIDTH, FPS = 12, 64, 96, 10.0


@pytest.fixture(scope="module")
def bright_model(tmp_path_factory):
    """A .keras model that calls a pixel 'person' when it is bright: p = sigmoid(10 mean(RGB) - 5)."""
    return brightness_model(tmp_path_factory.mktemp("model") / "bright.keras", 10)


def write_clip(path, frames=FRAMES):
    """A bright square moving right over a dark background, mp4v at FPS."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for i in range(frames):
        frame = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
        frame[16:48, 4 + 4 * i : 36 + 4 * i] = 230
        writer.write(frame)
    writer.release()
    return path


def read_clip(path):
    """(frames as RGB arrays, frame rate) of a video file."""
    capture, info = video.open_video(path)
    frames = [f for batch in video.read_batches(capture, 5) for f in batch]
    capture.release()
    return frames, info.fps


def run(*argv):
    return results.main([str(a) for a in argv])


def test_video_keeps_frames_size_and_rate_on_green_by_default(tmp_path, bright_model, capsys):
    clip, out = write_clip(tmp_path / "clip.mp4"), tmp_path / "out"
    assert run("--model", bright_model, "--size", 64, "--out-dir", out, "--figure", tmp_path / "f.png", clip) == 0
    printed = capsys.readouterr().out
    assert "without sound" in printed and "(green)" in printed
    assert f"clip.mp4: {FRAMES} frames, {WIDTH}x{HEIGHT} at 10 fps" in printed
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]  # no temporary file, no figure without photos
    assert not (tmp_path / "f.png").exists()
    frames, fps = read_clip(out / "clip.mp4")
    assert len(frames) == FRAMES and frames[0].shape == (HEIGHT, WIDTH, 3) and fps == FPS
    for i, frame in enumerate(frames):
        frame = frame.astype(int)
        assert np.abs(frame[54:, :] - (0, 255, 0)).mean() < 12, i  # below the square: the green background
        assert np.abs(frame[24:40, 12 + 4 * i : 28 + 4 * i] - 230).mean() < 12, i  # the square kept


def test_video_background_colour_and_mask_only(tmp_path, bright_model):
    clip = write_clip(tmp_path / "clip.mp4")
    args = ["--model", bright_model, "--size", 64, "--figure", tmp_path / "f.png", clip]
    assert run(*args, "--out-dir", tmp_path / "blue", "--background", "0,0,255") == 0
    frames, _ = read_clip(tmp_path / "blue" / "clip.mp4")
    assert len(frames) == FRAMES
    assert all(np.abs(f[54:].astype(int) - (0, 0, 255)).mean() < 12 for f in frames)

    assert run(*args, "--out-dir", tmp_path / "mask", "--mask-only") == 0
    masks, fps = read_clip(tmp_path / "mask" / "clip.mp4")
    assert len(masks) == FRAMES and fps == FPS
    assert all(np.abs(m.astype(int) - m[..., :1]).max() <= 2 for m in masks)  # gray: R = G = B
    # The alpha results.py gives each frame of the clip as read back (the guided filter's).
    predictor = inference.Predictor(inference.load_model(bright_model), 64)
    inputs, _ = read_clip(clip)
    probs = predictor(np.stack([images.squash(f, 64) for f in inputs]))
    for mask, prob, frame in zip(masks, probs, inputs, strict=True):
        expected = compose.person_alpha(frame, prob).astype(int)
        assert np.abs(mask[..., 0].astype(int) - expected).mean() < 4


def test_smoothing_reduces_flicker():
    flicker = np.array([0.2, 0.8] * 10, np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32)
    raw = np.abs(np.diff(flicker[:, 0, 0])).mean()
    smoother = video.AlphaSmoother(0.8)
    smoothed = np.concatenate([smoother(flicker[:7]), smoother(flicker[7:])])  # state carries across batches
    assert np.abs(np.diff(smoothed[:, 0, 0])).mean() < 0.3 * raw
    assert video.AlphaSmoother(0.0)(flicker) is flicker
    with pytest.raises(ValueError, match="--smooth"):
        video.AlphaSmoother(1.0)


class Flicker:
    """A predictor whose whole-frame probability alternates 0.2, 0.8, 0.2, ... frame after frame."""

    image_size = 32

    def __init__(self):
        self.frames = 0

    def __call__(self, batch):
        values = [(0.2, 0.8)[(self.frames + i) % 2] for i in range(len(batch))]
        self.frames += len(batch)
        return np.array(values, np.float32)[:, None, None] * np.ones((1, 32, 32), np.float32)


def test_process_video_smooths_flickering_alpha(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4")
    change = {}
    for smooth in (0.0, 0.8):
        out = tmp_path / f"smooth{smooth}.mp4"

        def render(frame, prob, squashed=None):
            return compose.alpha_map(prob, *frame.shape[:2])

        info = video.process_video(Flicker(), clip, out, render, batch_size=5, smooth=smooth, progress=False)
        assert (info.frames, info.width, info.height, info.fps) == (FRAMES, WIDTH, HEIGHT, FPS)
        masks, _ = read_clip(out)
        change[smooth] = np.mean([np.abs(b.astype(int) - a).mean() for a, b in zip(masks[:-1], masks[1:], strict=True)])
    assert change[0.8] < 0.5 * change[0.0]


def test_failed_or_interrupted_videos_leave_nothing(tmp_path, bright_model, capsys):
    clip = write_clip(tmp_path / "clip.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 10)
    out = tmp_path / "out"
    args = ["--model", bright_model, "--size", 64, "--out-dir", out, "--figure", tmp_path / "f.png"]
    assert run(*args, tmp_path / "broken.mp4", clip) == 1
    err = capsys.readouterr().err
    assert "failed: " in err and "broken.mp4" in err
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]

    def render(frame, prob, squashed=None):
        if render.calls == 5:
            raise KeyboardInterrupt
        render.calls += 1
        return frame

    render.calls = 0
    part = tmp_path / "part"
    part.mkdir()
    with pytest.raises(KeyboardInterrupt):
        video.process_video(Flicker(), clip, part / "clip.mp4", render, progress=False)
    assert list(part.iterdir()) == []
    with pytest.raises(RuntimeError), video.video_writer(part / "v.mp4", FPS) as write:
        write(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
        raise RuntimeError("stop")
    assert list(part.iterdir()) == []


def test_existing_video_is_not_overwritten(tmp_path, bright_model, capsys):
    clip = write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.mp4").write_bytes(b"mine")
    args = ["--model", bright_model, "--size", 64, "--out-dir", out, clip]
    assert run(*args) == 2
    assert "already exist" in capsys.readouterr().err
    assert (out / "clip.mp4").read_bytes() == b"mine"
    assert run(*args, "--overwrite") == 0
    assert len(read_clip(out / "clip.mp4")[0]) == FRAMES


def test_what_counts_as_a_video(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4")
    (tmp_path / "clip.dat").write_bytes(clip.read_bytes())
    (tmp_path / "notes.dat").write_text("not a video")
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((8, 8, 3), np.uint8))
    assert video.is_video(clip) and video.is_video(tmp_path / "clip.dat")
    assert not video.is_video(tmp_path / "notes.dat") and not video.is_video(tmp_path / "photo.png")
    photos, videos = results.find_inputs([str(tmp_path)])
    assert [p.name for p in photos] == ["photo.png"] and [v.name for v in videos] == ["clip.mp4"]
