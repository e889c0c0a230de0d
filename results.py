"""Looks at a trained model: cutouts of any photo or video, a figure of predictions, test metrics.

    python results.py me.jpg
        -> cutouts/me.png with the model shipped in models/ (MODEL.md), trained on real photos
    python results.py --model runs/demo/best.keras --figure preds.png photos/ me.jpg
        -> cutouts/<stem>.png (RGBA at the photo's resolution) and a figure of the predictions
    python results.py --model runs/demo/best.keras --mask-only photos/
        -> cutouts/<stem>.png: the 8-bit alpha alone, at the photo's resolution
    python results.py --model runs/demo/best.keras --background white --smooth 0.5 clip.mp4
        -> cutouts/clip.mp4: the person on white, at the clip's frame rate and size, silent
    python results.py --model runs/demo/best.keras --evaluate data/test --json test.json --figure worst.png
        -> accuracy, iou and seed_iou over the whole split, and a figure of the worst photos

Inference follows the original: squash the photo to the model's input size, scale to
[0, 1], predict. The probability map is then upsampled to the photo's size, its edges
refined with the photo as the guide (a guided filter; ``--no-guided-filter``: plain
upsampling), and used as the cutout's alpha channel (``--hard``: thresholded at 0.5, like
the original).
Where the alpha is soft, the cutout's colour is the person's estimated own colour rather
than the photo's, so a new background shows no fringe of the old one (``--no-refine``:
the photo's colour). A video has no transparency: without ``--background`` its background
is green (``VIDEO_BACKGROUND``), ready for a chroma key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import cli

if __name__ == "__main__":  # run as a script: first, before TensorFlow is imported (see cli.quiet_tensorflow)
    cli.quiet_tensorflow()

import compose
import data
import figures
import images
import inference
import video

# A video's background when --background is not given: chroma-key green.
VIDEO_BACKGROUND = (0, 255, 0)


def find_inputs(inputs: list[str]) -> tuple[list[Path], list[Path]]:
    """Photos and videos given directly, and those found (recursively) in folders, in a stable order.

    A file given directly is a video if ``video.is_video`` says so, else a photo (an
    unreadable one is reported when it is read).

    Raises:
        FileNotFoundError: an input that does not exist.
    """
    photos, videos = [], []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            photos.extend(images.list_images(path, recursive=True))
            videos.extend(video.list_videos(path))
        elif path.exists():
            (videos if video.is_video(path) else photos).append(path)
        else:
            raise FileNotFoundError(f"{name}: no such file or folder")
    return photos, videos


def output_names(photos: list[Path], out_dir: Path, ext: str) -> list[Path]:
    """<out_dir>/<stem><ext> for each photo; a repeated stem gets -2, -3, ..."""
    seen, names = {}, []
    for photo in photos:
        n = seen[photo.stem] = seen.get(photo.stem, 0) + 1
        names.append(out_dir / (f"{photo.stem}{ext}" if n == 1 else f"{photo.stem}-{n}{ext}"))
    return names


# ---------------------------------------------------------------------------- script

# The model trained on real photos that ships with the repository (MODEL.md).
SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "person_unet.keras"


def _flag(name: str, value=None) -> str:
    """An option as results.py's command line spells it: --mask-only, --format webp."""
    return f"--{name.replace('_', '-')}" + ("" if value is None else f" {value}")


def output_problem(mask_only: bool, fmt: str, background, spell=_flag) -> str | None:
    """What is wrong with asking for this output, or None: results.py's rules, which serve.py applies too.

    ``spell(name, value=None)`` writes an option as the caller's users give it (default: a flag).
    """
    if mask_only and fmt != "png":
        return f"{spell('mask_only')} writes lossless PNG masks (and grayscale videos): drop {spell('format', fmt)}"
    if mask_only and background is not None:
        return f"{spell('mask_only')} writes the alpha alone, on no background: drop {spell('background')}"
    if fmt == "jpg" and background is None:
        return f"{spell('format', 'jpg')} needs {spell('background')} (JPEG has no transparency)"
    return None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="results.py",
        description="Cut people out of photos and videos with a trained model, plot predictions, or evaluate a split.",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument(
        "photos",
        nargs="*",
        help="photos, videos, and folders of them (walked recursively); out-dir/<stem>.mp4 per video",
    )
    parser.add_argument(
        "--model",
        default=str(SHIPPED_MODEL),
        help="a .keras model file, e.g. runs/demo/best.keras (default: the model shipped with the repository, "
        "trained on real photos; see MODEL.md)",
    )
    parser.add_argument("--out-dir", default="cutouts", help="folder for the cutouts")
    parser.add_argument(
        "--figure",
        metavar="PATH",
        default=None,
        help="also write a figure of the predictions (with --evaluate: of the worst photos) to this PNG",
    )
    parser.add_argument(
        "--show", action="store_true", help="open the figure in a window (a screen needed; with or without --figure)"
    )
    parser.add_argument("--hard", action="store_true", help="binary alpha (threshold 0.5) instead of soft edges")
    parser.add_argument(
        "--mask-only", action="store_true", help="write the 8-bit alpha (PNG; a grayscale video) instead of a cutout"
    )
    parser.add_argument(
        "--no-guided-filter",
        action="store_true",
        help="the alpha as the model's probabilities upsampled (default: its edges refined with the photo as the "
        "guide, a guided filter)",
    )
    parser.add_argument(
        "--no-refine",
        action="store_true",
        help="keep the photo's colour in the soft edge (default: the person's estimated colour, no fringe)",
    )
    parser.add_argument(
        "--background",
        default=None,
        help="replace the background: a colour (white, #00ff00, 0,255,0), blur, or an image file "
        "(default: transparent; for a video, which has no transparency, green)",
    )
    parser.add_argument(
        "--format",
        choices=("png", "webp", "jpg"),
        default="png",
        help="photo cutout format: png, webp (lossless, with alpha, smaller), or jpg (needs --background)",
    )
    parser.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        metavar="F",
        help="videos: average each frame's alpha with the previous ones, F in [0, 1) (0: off; 0.5: against flicker)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"model input size, a multiple of 32 (default: the model's, else its run's, else {images.DEFAULT_SIZE})",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="photos (or video frames) per forward pass")
    parser.add_argument("--figure-rows", type=int, default=12, help="at most this many photos in the figure")
    parser.add_argument(
        "--evaluate", metavar="SPLIT_DIR", default=None, help="evaluate on a split folder (images/, masks/)"
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="with --evaluate: write the metrics as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace existing cutouts, videos, figure and JSON")
    args = parser.parse_args(argv)
    if not args.photos and not args.evaluate:
        parser.error("give photos, videos or folders to cut out, or --evaluate SPLIT_DIR")
    problem = output_problem(args.mask_only, args.format, args.background)
    if problem:
        parser.error(problem)
    try:
        video.AlphaSmoother(args.smooth)  # the library checks the factor; a bad one fails before the model loads
    except ValueError as e:
        parser.error(str(e))
    if args.batch_size < 1 or args.figure_rows < 1:
        parser.error("--batch-size and --figure-rows must be at least 1")
    if args.json and not args.evaluate:
        parser.error("--json needs --evaluate")
    return args


def _refuse_existing(paths: list[Path], what: str) -> None:
    existing = [p for p in paths if p.exists()]
    if existing:
        raise FileExistsError(
            f"{len(existing)} {what} already exist (e.g. {existing[0]}): use --overwrite or choose another path"
        )


def evaluate_split(args: argparse.Namespace, predictor: inference.Predictor) -> int:
    """--evaluate: the metrics of a split, optionally as JSON, and (--figure, --show) a figure of its worst photos."""
    figure = Path(args.figure) if args.figure else None
    if not args.overwrite:
        _refuse_existing([Path(p) for p in (args.figure, args.json) if p], "output file(s)")
    scores = inference.evaluate(predictor, args.evaluate)
    worst = sorted(scores.pop("per_image"), key=lambda row: row[2])[: args.figure_rows]
    print(
        f"{args.evaluate}: {scores['images']} images: accuracy {scores['accuracy']:.4f}, "
        f"iou {scores['iou']:.4f}, seed_iou {scores['seed_iou']:.4f}"
    )
    if args.json:
        images.write_atomic(Path(args.json), (json.dumps(scores, indent=2) + "\n").encode())
        print(f"wrote {args.json}")
    if figure or args.show:
        pairs = [data.load_pair(image, mask, predictor.image_size) for image, mask, _ in worst]
        photos = [photo for photo, _ in pairs]
        figures.plot_predictions(
            photos,
            list(predictor(np.stack(photos))),
            figure,
            masks=[mask[..., 0] for _, mask in pairs],
            titles=[f"{Path(image).stem}: iou {score:.2f}" for image, _, score in worst],
            show=args.show,
        )
    if figure:
        print(f"wrote {figure} (the {len(worst)} worst-scoring photos)")
    return 0


def make_render(args: argparse.Namespace, background):
    """(full-size RGB photo, probability map, the photo squashed) -> what to write: the alpha (--mask-only) or the cutout."""
    guided, refine = not args.no_guided_filter, not args.no_refine
    if args.mask_only:
        return lambda photo, prob, squashed=None: compose.person_alpha(photo, prob, args.hard, guided, squashed)
    return lambda photo, prob, squashed=None: compose.cutout(
        photo, prob, args.hard, background, refine, guided, squashed
    )


def cut_out_videos(args: argparse.Namespace, predictor, background, videos: list[Path], outputs: list[Path]):
    """Every video cut out frame by frame (video.process_video).

    Returns:
        (videos written, one message per video that failed).
    """
    if background is None and not args.mask_only:
        background = VIDEO_BACKGROUND
        print(
            f"note: a video has no transparency: background {','.join(map(str, background))} (green), see --background"
        )
    print("note: videos are written without sound (OpenCV reads no audio)")
    render, written, failures = make_render(args, background), 0, []
    for path, output in zip(videos, outputs, strict=True):
        try:
            info = video.process_video(predictor, path, output, render, args.batch_size, args.smooth)
        except video.VideoError as e:
            failures.append(str(e))
            continue
        written += 1
        print(f"wrote {output}: {info.frames} frames, {info.width}x{info.height} at {info.fps:g} fps")
    return written, failures


def cut_out(args: argparse.Namespace, predictor: inference.Predictor) -> int:
    """Cutouts (or masks) of every photo and video given, and (--figure, --show) a figure of the first photos."""
    background = compose.parse_background(args.background)
    figure = Path(args.figure) if args.figure else None
    photos, videos = find_inputs(args.photos)
    if not photos and not videos:
        raise FileNotFoundError(
            f"no photos ({', '.join(images.IMAGE_EXTENSIONS)}) or videos ({', '.join(video.VIDEO_EXTENSIONS)}) "
            f"in {' '.join(args.photos)}"
        )
    out_dir = Path(args.out_dir)
    outputs = output_names(photos, out_dir, f".{args.format}")
    video_outputs = output_names(videos, out_dir, ".mp4")
    if not args.overwrite:
        _refuse_existing([figure] if figure and photos else [], "figure file(s)")
        _refuse_existing(outputs + video_outputs, "cutout(s)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise images.WriteError.of(f"{out_dir}/", e) from None
    rows, failures = [], []
    if photos:
        rows, failures = inference.cut_out_photos(
            predictor,
            photos,
            outputs,
            make_render(args, background),
            args.batch_size,
            thumbnails=bool(figure or args.show),
        )
    written = 0
    if videos:
        written, video_failures = cut_out_videos(args, predictor, background, videos, video_outputs)
        failures += video_failures
    for message in failures:
        print(f"failed: {message}", file=sys.stderr)
    shown = rows[: args.figure_rows] if figure or args.show else []
    if shown:
        figures.plot_predictions(
            [r["photo"] for r in shown], [r["prob"] for r in shown], figure, titles=[r["name"] for r in shown],
            show=args.show,
        )  # fmt: skip
    done = [f"{len(rows)} {'mask' if args.mask_only else 'cutout'}(s)"] if photos else []
    done += [f"{written} video(s)"] if videos else []
    print(
        f"done: {' and '.join(done)} in {out_dir}/, {len(failures)} failed"
        + (f"; figure of {len(shown)} photo(s) in {figure}" if shown and figure else "")
    )
    return 1 if failures else 0


def run(args: argparse.Namespace) -> int:
    """Does the work of main(); returns the exit code."""
    model = inference.load_model(args.model)
    size = inference.model_size(model, args.size, args.model)
    cli.print_config("results.py", vars(args))
    predictor = inference.Predictor(model, size)
    inference.keep_freed_memory()
    return evaluate_split(args, predictor) if args.evaluate else cut_out(args, predictor)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except images.WriteError as e:  # a full disk, an unwritable --out-dir: the next photo would fail too
        cli.error("results.py", str(e))
        return 1
    except (inference.ModelError, FileNotFoundError, FileExistsError, ValueError, images.ImageReadError) as e:
        cli.error("results.py", str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())
