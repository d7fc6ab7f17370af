"""Headless Chromium screenshots of our HTML reports, and a stdlib PNG reader to check what they show.

An HTML report can be well-formed and still render as nothing (a CSP that blocks its own style, an SVG with
a broken attribute, a table pushed off-screen), so report tests open the page in a real browser, Debian's
`chromium`, and look at the pixels: enough non-white, enough distinct colours for text, and the chart's
verdict colours present. The PNG reader is pure Python (zlib plus the five PNG row filters) so the tests need
no imaging library.

    png = screenshot(tmp_path / "report.html", tmp_path / "report.png", height=2400)
    image = read_png(png)
    assert image.non_white_share > 0.05 and image.pixels_of("#2e7d32") > 100
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
INSTALL_HINT = "headless Chromium is not installed: run `bash .ci/chromium.sh` as root (Debian package chromium)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WHITE = (255, 255, 255)


def find_chromium() -> str | None:
    """Debian names the binary `chromium`; older Debian and Ubuntu images `chromium-browser`."""
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def require_chromium() -> str:
    """The browser's path, or skip the calling test saying how to get it (CI installs it as root)."""
    found = find_chromium()
    if found is None:
        pytest.skip(INSTALL_HINT)
    return found


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 2000, timeout: float = 90.0) -> Path:
    """Render `html` in headless Chromium at width x height CSS pixels and write the viewport to `png`.

    A throwaway profile keeps runs independent of each other and of any desktop profile; the whole process
    group is killed on timeout because Chromium leaves helper processes (zygote, GPU, crashpad) behind its
    main one. Raises RuntimeError with Chromium's stderr when no screenshot appears."""
    browser = require_chromium()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium refuses its sandbox
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers have a small /dev/shm
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            html.resolve().as_uri(),
        ]
        stderr = _run(command, timeout)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {png}:\n{stderr}")
    return png


def _run(command: list[str], timeout: float) -> str:
    """Run Chromium in its own process group, return its stderr; kill the group if it hangs or lingers."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        _, stderr = process.communicate()
        raise RuntimeError(f"chromium took longer than {timeout:.0f}s: {' '.join(command)}\n{stderr}") from None
    finally:
        _kill_group(process.pid)  # helpers that outlive a finished run
    if process.returncode != 0:
        raise RuntimeError(f"chromium exited with {process.returncode}: {' '.join(command)}\n{stderr}")
    return stderr


def _kill_group(group: int) -> None:
    """Kill the process group Chromium was started in (ours alone: it was created for it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


@dataclass
class PngImage:
    """A decoded 8-bit RGB or RGBA image (alpha dropped: screenshots are opaque) with pixel statistics."""

    width: int
    height: int
    rows: list[bytes]
    """Reconstructed scanlines, `channels` bytes per pixel."""
    channels: int
    _colours: Counter[tuple[int, int, int]] | None = field(default=None, repr=False)

    @property
    def colours(self) -> Counter[tuple[int, int, int]]:
        """Pixels per RGB colour (computed once, with C-speed slicing rather than a per-pixel loop)."""
        if self._colours is None:
            counts: Counter[tuple[int, int, int]] = Counter()
            step = self.channels
            for row in self.rows:
                counts.update(zip(row[0::step], row[1::step], row[2::step], strict=True))
            self._colours = counts
        return self._colours

    @property
    def distinct_colours(self) -> int:
        return len(self.colours)

    @property
    def non_white_share(self) -> float:
        """Share of pixels that are not pure white: near 0 means the page rendered nothing."""
        total = self.width * self.height
        return (total - self.colours[WHITE]) / total if total else 0.0

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        start = x * self.channels
        red, green, blue = self.rows[y][start : start + 3]
        return red, green, blue

    def pixels_of(self, colour: str, tolerance: int = 0) -> int:
        """Pixels within `tolerance` per channel of a #rrggbb colour (antialiased edges are near, not equal)."""
        wanted = rgb(colour)
        if tolerance == 0:
            return self.colours[wanted]
        return sum(
            n
            for have, n in self.colours.items()
            if all(abs(a - b) <= tolerance for a, b in zip(have, wanted, strict=True))
        )

    def row_counts(self, colour: str) -> list[int]:
        """Pixels of exactly `colour` in each row, top to bottom: where on the page a colour is, and how wide."""
        wanted, step = rgb(colour), self.channels
        return [
            sum(1 for pixel in zip(row[0::step], row[1::step], row[2::step], strict=True) if pixel == wanted)
            for row in self.rows
        ]


def rgb(colour: str) -> tuple[int, int, int]:
    """#rrggbb as a (red, green, blue) tuple."""
    digits = colour.lstrip("#")
    if len(digits) != 6:
        raise ValueError(f"not a #rrggbb colour: {colour!r}")
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def read_png(path: Path) -> PngImage:
    """Decode a non-interlaced 8-bit RGB/RGBA PNG (what Chromium writes); anything else raises ValueError."""
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG")
    header, compressed = _chunks(data)
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {2: 3, 6: 4}.get(colour_type)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {colour_type}, interlace {interlace})")
    raw = zlib.decompress(compressed)
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise ValueError(f"{path}: {len(raw)} bytes of image data, expected {height * (stride + 1)}")
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        previous = _unfilter(raw[start], raw[start + 1 : start + 1 + stride], previous, channels)
        rows.append(previous)
    return PngImage(width, height, rows, channels)


def _chunks(data: bytes) -> tuple[bytes, bytes]:
    """The IHDR payload and the concatenated IDAT payloads, CRCs checked (a truncated file must not pass)."""
    offset, header, idat = len(PNG_SIGNATURE), b"", []
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if offset + 12 + length > len(data):
            break
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        if zlib.crc32(kind + payload) != crc:
            raise ValueError(f"PNG chunk {kind!r} fails its CRC")
        if kind == b"IHDR":
            header = payload
        elif kind == b"IDAT":
            idat.append(payload)
        elif kind == b"IEND":
            return header, b"".join(idat)
        offset += 12 + length
    raise ValueError("PNG ends without IEND (truncated)")


def _unfilter(kind: int, line: bytes, above: bytes, bpp: int) -> bytes:
    """Undo one scanline's filter (PNG spec, section 9). None and Up dominate in screenshots of pages (flat
    backgrounds), so they take the fast paths; Sub, Average and Paeth are reconstructed byte by byte."""
    if kind == 0:
        return line
    if kind == 2:
        return _add_bytes(line, above)
    out = bytearray(line)
    size = len(out)
    if kind == 1:
        for i in range(bpp, size):
            out[i] = (out[i] + out[i - bpp]) & 0xFF
    elif kind == 3:
        for i in range(size):
            left = out[i - bpp] if i >= bpp else 0
            out[i] = (out[i] + ((left + above[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(size):
            if i < bpp:
                out[i] = (out[i] + above[i]) & 0xFF
                continue
            a, b, c = out[i - bpp], above[i], above[i - bpp]
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[i] = (out[i] + predictor) & 0xFF
    else:
        raise ValueError(f"unknown PNG filter type {kind}")
    return bytes(out)


def _add_bytes(left: bytes, right: bytes) -> bytes:
    """Bytewise (a + b) mod 256 of two equal-length strings in a few big-integer operations: the high bit of
    each byte is added without carry (xor) so no carry crosses into the next byte."""
    if not left:
        return left
    size = len(left)
    low = int.from_bytes(b"\x7f" * size, "big")
    a, b = int.from_bytes(left, "big"), int.from_bytes(right, "big")
    total = ((a & low) + (b & low)) ^ ((a ^ b) & ~low & ((1 << (8 * size)) - 1))
    return total.to_bytes(size, "big")
