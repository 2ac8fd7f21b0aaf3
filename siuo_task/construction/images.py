"""The source image folder of a build: which files are usable images, and what each needed.

Files are taken in sorted order of their path under the folder. A file that does not decode is
listed as unusable; a file with the same bytes as an earlier one is a duplicate of it; an image
larger than the API accepts is resized to fit (recorded). Nothing is written here.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from siuo_task.errors import DataError

# OpenAI's documented per-image limit is 20 MB, and it scales high-detail images to fit
# 2048 x 2048 anyway; larger images are resized here so the request is accepted and the
# recorded image is what the model saw.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_SIDE = 2048
_SUFFIX_BY_FORMAT = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif"}


@dataclass(frozen=True, slots=True)
class SourceImage:
    """One usable image: where it came from, its bytes as sent, and what was done to it."""

    relative_path: str
    sha256: str
    data: bytes
    suffix: str
    size: tuple[int, int]
    note: str | None  # what was done to make it acceptable (resized, re-encoded), if anything


@dataclass(frozen=True, slots=True)
class ImageScan:
    """The folder's usable images and every file that was left out, with the reason."""

    images: tuple[SourceImage, ...]
    problems: tuple[dict[str, str], ...]


def scan_images(folder: Path) -> ImageScan:
    """Read every file under ``folder`` (sorted, hidden files skipped).

    Raises:
        DataError: the folder is missing, empty, or holds no usable image.
    """
    if not folder.is_dir():
        raise DataError(f"image folder '{folder}' does not exist; pass --images DIR, a folder of images")
    files = sorted(
        (path for path in folder.rglob("*") if path.is_file() and not _hidden(path.relative_to(folder))),
        key=lambda path: path.relative_to(folder).as_posix(),
    )
    if not files:
        raise DataError(f"image folder '{folder}' is empty; put the source images (PNG, JPEG, WebP) in it")
    images: list[SourceImage] = []
    problems: list[dict[str, str]] = []
    first_by_sha: dict[str, str] = {}
    for path in files:
        relative = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if sha in first_by_sha:
            problems.append({"file": relative, "problem": f"duplicate of '{first_by_sha[sha]}' (same bytes); skipped"})
            continue
        first_by_sha[sha] = relative
        try:
            images.append(_usable(relative, data, sha))
        except UnidentifiedImageError:
            problems.append({"file": relative, "problem": "not an image (no known image format); skipped"})
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            problems.append({"file": relative, "problem": f"image cannot be decoded ({exc}); skipped"})
    if not images:
        listed = "; ".join(f"{p['file']}: {p['problem']}" for p in problems[:10])
        raise DataError(f"no usable image in '{folder}' ({len(problems)} file(s) left out: {listed})")
    return ImageScan(tuple(images), tuple(problems))


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _usable(relative: str, data: bytes, sha: str) -> SourceImage:
    with Image.open(io.BytesIO(data)) as probe:
        probe.verify()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        size = image.size
        kind = image.format or ""
        if len(data) <= MAX_IMAGE_BYTES and max(size) <= MAX_IMAGE_SIDE and kind in _SUFFIX_BY_FORMAT:
            return SourceImage(relative, sha, data, _SUFFIX_BY_FORMAT[kind], size, None)
        return _resized(relative, image, sha, size, len(data))


def _resized(relative: str, image: Image.Image, sha: str, size: tuple[int, int], length: int) -> SourceImage:
    """Fit within MAX_IMAGE_SIDE and re-encode as PNG (deterministic bytes); also converts
    formats the API does not take (BMP, TIFF, ...)."""
    copy = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    copy.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    copy.save(buffer, format="PNG", optimize=False)
    original = f"{image.format or 'unknown format'} {size[0]}x{size[1]}, {length} bytes"
    if copy.size != size:
        note = f"resized from {original} to PNG {copy.size[0]}x{copy.size[1]} (API limit {MAX_IMAGE_SIDE} px, 20 MB)"
    else:
        note = f"re-encoded from {original} as PNG (a format the API accepts)"
    return SourceImage(relative, sha, buffer.getvalue(), ".png", copy.size, note)
