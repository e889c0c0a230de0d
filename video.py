"""Videos: reading frames in batches, writing a video atomically, and smoothing the alpha over time.

    frames = process_video(predictor, "clip.mp4", "cutouts/clip.mp4", render, batch_size=8, smooth=0.5)

``render(frame, prob, squashed)`` turns one RGB frame, its probability map and the frame as
the model saw it into the output frame:
RGB (e.g. ``compose.cutout`` on a background) or a 2-D alpha map (a grayscale video).
results.py is the command line over this module.

OpenCV reads and writes the frames (the FFmpeg inside opencv-python-headless). It carries
no sound, so a video comes out silent. The output is MPEG-4 Part 2 (fourcc ``mp4v``) in an
.mp4 file: the MP4 codec that opencv-python-headless's FFmpeg build encodes everywhere (its
only H.264 encoder is a hardware one, V4L2, which servers lack). Frames are written under a hidden temporary
name that keeps the .mp4 suffix (FFmpeg picks the container from it) and renamed at the
end, so an interrupted or failed video leaves no file behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

import images

# What results.py takes for a video when it walks a folder or sees a file by its name.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
FOURCC = "mp4v"
# A stream that does not say its frame rate (some raw or broken files) is written at this one.
DEFAULT_FPS = 30.0


class VideoError(ValueError):
    """A video that cannot be opened, read or written; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frames per second, frame size, and the frame count (0: unknown)."""

    fps: float
    width: int
    height: int
    frames: int


def is_video(path: str | Path) -> bool:
    """Whether a file is a video: by its suffix, else (not a photo's suffix) if OpenCV opens it with frames.

    More than one frame: OpenCV also opens a photo, as a one-frame video.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    if suffix in images.IMAGE_EXTENSIONS or not path.is_file():
        return False
    capture = cv2.VideoCapture(str(path))
    try:
        return capture.isOpened() and capture.get(cv2.CAP_PROP_FRAME_COUNT) > 1
    finally:
        capture.release()


def list_videos(folder: str | Path) -> list[Path]:
    """The video files (``VIDEO_EXTENSIONS``) under a folder, recursively, sorted; hidden ones
    (``video_writer``'s temporary files among them) skipped."""
    return images.list_images(folder, recursive=True, extensions=VIDEO_EXTENSIONS)


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """A capture of the video and its ``VideoInfo``.

    Raises:
        VideoError: the file is missing or OpenCV cannot read it as a video.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: not a video OpenCV can read, or corrupt")
    fps = capture.get(cv2.CAP_PROP_FPS)
    info = VideoInfo(
        fps=fps if fps > 0 and np.isfinite(fps) else DEFAULT_FPS,
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        frames=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
    )
    return capture, info


def read_batches(capture: cv2.VideoCapture, batch_size: int) -> Iterator[list[np.ndarray]]:
    """The frames of a capture as lists of up to ``batch_size`` uint8 RGB arrays, in order."""
    batch = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextmanager
def video_writer(path: str | Path, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """A ``write(frame)`` function that appends frames to the video ``path``, renamed into place at the end.

    The first frame sets the size and the kind: (h, w, 3) uint8 RGB gives a colour video,
    (h, w) uint8 a grayscale one. If the block raises (or is interrupted), the temporary
    file is removed and nothing is left at ``path``.

    Raises:
        VideoError: OpenCV cannot write this video, or no frame was written.
    """
    path = Path(path)
    tmp = images.tmp_name(path, keep_suffix=True)  # FFmpeg picks the container from the suffix
    state = {"writer": None, "frames": 0}

    def write(frame: np.ndarray) -> None:
        if state["writer"] is None:
            height, width = frame.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*FOURCC)
            state["writer"] = cv2.VideoWriter(str(tmp), fourcc, fps, (width, height), isColor=frame.ndim == 3)
            if not state["writer"].isOpened():
                raise VideoError(f"{path}: OpenCV cannot write a {width}x{height} {FOURCC} video there")
        state["writer"].write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame)
        state["frames"] += 1

    try:
        yield write
        if state["writer"] is None:
            raise VideoError(f"{path}: no frame to write")
        state["writer"].release()
        os.replace(tmp, path)
    finally:
        if state["writer"] is not None:
            state["writer"].release()
        tmp.unlink(missing_ok=True)


class AlphaSmoother:
    """An exponential moving average of the probability maps across frames, against flicker.

    ``smoothed = factor * previous + (1 - factor) * new``: 0 passes the maps through, 0.5
    halves a one-frame blip and cuts a flicker that flips every frame to a third, and
    values near 1 make the alpha lag behind fast motion (a change takes about
    1 / (1 - factor) frames to settle).
    """

    def __init__(self, factor: float = 0.0):
        if not 0.0 <= factor < 1.0:
            raise ValueError(f"--smooth must be at least 0 and below 1 (0: off). Received: {factor}")
        self.factor, self.state = factor, None

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        """(n, size, size) probabilities of n consecutive frames -> the smoothed maps, in order."""
        if self.factor == 0.0:
            return probs
        out = np.empty_like(probs, dtype=np.float32)
        for i, prob in enumerate(probs):
            if self.state is None:
                self.state = prob.astype(np.float32)
            else:
                self.state = self.factor * self.state + (1.0 - self.factor) * prob
            out[i] = self.state
        return out


def process_video(
    predictor,
    path: str | Path,
    output: str | Path,
    render: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    batch_size: int = 8,
    smooth: float = 0.0,
    progress: bool = True,
) -> VideoInfo:
    """Predicts every frame of a video in batches and writes ``render(frame, prob, squashed)`` as a video.

    Args:
        predictor: an ``inference.Predictor`` (or any callable on (n, size, size, 3) uint8
            batches with an ``image_size``).
        path: the video to read; output: the .mp4 to write (at the input's frame rate).
        render: (RGB frame, probability map, the frame squashed) -> RGB frame or 2-D uint8 alpha.
        batch_size: frames per forward pass.
        smooth: ``AlphaSmoother`` factor (0: off).
        progress: show a progress bar.

    Returns:
        What was written: frame rate, frame size and frame count.

    Raises:
        VideoError: naming the file that cannot be read or written; nothing is left at ``output``.
    """
    smoother = AlphaSmoother(smooth)
    capture, info = open_video(path)
    bar = tqdm(total=info.frames or None, desc=Path(path).name, unit="frame", disable=None if progress else True)
    written, size = 0, (info.width, info.height)
    try:
        with video_writer(output, info.fps) as write:
            for frames in read_batches(capture, batch_size):
                size = frames[0].shape[1::-1]  # as decoded: a rotated phone video's may differ from the container's
                squashed = np.stack([images.squash(f, predictor.image_size) for f in frames])
                probs = smoother(predictor(squashed))
                for frame, prob, small in zip(frames, probs, squashed, strict=True):
                    write(render(frame, prob, squashed=small))
                written += len(frames)
                bar.update(len(frames))
            if not written:
                raise VideoError(f"{path}: no frame could be read (not a video, or corrupt)")
    finally:
        bar.close()
        capture.release()
    return VideoInfo(info.fps, *size, written)
