"""Image encoding, and the short-lived store behind response_format=url."""

from __future__ import annotations

import base64
import contextlib
import io
import secrets
import struct
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
ANIMATION_TYPES = {"webp": "image/webp", "gif": "image/gif"}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> an RGB PNG file: every row "Up"-filtered (its difference to the row
    above, one numpy subtraction) and deflated at level 1. PIL's encoder costs about 0.3 ms of
    Python and object set-up per image whatever its size, more than the whole of this at 32 px;
    zlib releases the GIL, so large images encode in parallel off the event loop."""
    height, width, _ = pixels.shape
    rows = np.ascontiguousarray(pixels).reshape(height, width * 3)  # (H, 3W)
    filtered = np.empty((height, width * 3 + 1), dtype=np.uint8)  # (H, 1 + 3W)
    filtered[:, 0] = 2  # filter type Up (row 0's "row above" is zeros: itself)
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as PNG defines
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), 1)),
            _png_chunk(b"IEND", b""),
        )
    )


def encode_image(pixels: np.ndarray, output_format: str) -> bytes:
    """(H, W, 3) uint8 -> the bytes of a PNG, JPEG or WebP file."""
    if output_format == "png":
        return encode_png(pixels)
    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels))  # (H, W, 3) uint8 -> RGB
    if output_format == "jpeg":
        image.save(buffer, format="JPEG", quality=95)
    elif output_format == "webp":
        image.save(buffer, format="WEBP", lossless=True)
    else:
        raise ValueError(f"unsupported output format {output_format!r}")
    return buffer.getvalue()


def encode_animation(frames: np.ndarray, output_format: str, frame_ms: int) -> bytes:
    """(N, H, W, 3) uint8 -> an animated WebP (lossless) or GIF that loops forever."""
    images = [Image.fromarray(np.ascontiguousarray(frame)) for frame in frames]
    buffer = io.BytesIO()
    options = {"save_all": True, "append_images": images[1:], "duration": frame_ms, "loop": 0}
    if output_format == "webp":
        images[0].save(buffer, format="WEBP", lossless=True, **options)
    elif output_format == "gif":
        images[0].save(buffer, format="GIF", optimize=False, **options)
    else:
        raise ValueError(f"unsupported animation format {output_format!r}")
    return buffer.getvalue()


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class StoredImage:
    data: bytes
    media_type: str
    expires: float


class ImageStore:
    """Images kept for `ttl_s` seconds under unguessable ids, at most `capacity` of them."""

    def __init__(self, ttl_s: float, capacity: int) -> None:
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._images: OrderedDict[str, StoredImage] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, data: bytes, output_format: str) -> str:
        """Store the bytes; returns the id, a file name such as '3fa...c1.png'."""
        image_id = f"{secrets.token_urlsafe(16)}.{output_format}"
        stored = StoredImage(data, MEDIA_TYPES[output_format], time.monotonic() + self._ttl_s)
        with self._lock:
            self._images[image_id] = stored
            self._evict()
        return image_id

    def get(self, image_id: str) -> StoredImage | None:
        with self._lock:
            self._evict()
            return self._images.get(image_id)

    def _evict(self) -> None:
        now = time.monotonic()
        while self._images:
            oldest_id, oldest = next(iter(self._images.items()))
            if oldest.expires > now and len(self._images) <= self._capacity:
                break
            del self._images[oldest_id]


class SharedImageStore:
    """ImageStore's interface over a folder that every HTTP worker of one server shares, so
    the worker that answers a URL need not be the one that drew the image. A file per image,
    its expiry in the name; expired and surplus files go on each put."""

    def __init__(self, folder: str, ttl_s: float, capacity: int) -> None:
        self._folder = folder
        self._ttl_s = ttl_s
        self._capacity = capacity

    def put(self, data: bytes, output_format: str) -> str:
        import os

        image_id = f"{secrets.token_urlsafe(16)}.{output_format}"
        expires = time.time() + self._ttl_s
        temporary = os.path.join(self._folder, f".{image_id}")
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, os.path.join(self._folder, f"{expires:.3f}-{image_id}"))
        self._evict()
        return image_id

    def get(self, image_id: str) -> StoredImage | None:
        import glob
        import os

        if "/" in image_id or "*" in image_id or "?" in image_id or "[" in image_id:
            return None
        for path in glob.glob(os.path.join(self._folder, f"*-{image_id}")):
            expires = float(os.path.basename(path).split("-", 1)[0])
            if expires <= time.time():
                return None
            with open(path, "rb") as file:
                data = file.read()
            output_format = image_id.rsplit(".", 1)[-1]
            return StoredImage(
                data, MEDIA_TYPES[output_format], time.monotonic() + expires - time.time()
            )
        return None

    def _evict(self) -> None:
        import os

        names = sorted(n for n in os.listdir(self._folder) if not n.startswith("."))
        now = time.time()
        surplus = len(names) - self._capacity
        for index, name in enumerate(names):
            if index < surplus or float(name.split("-", 1)[0]) <= now:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(self._folder, name))
            else:
                break
