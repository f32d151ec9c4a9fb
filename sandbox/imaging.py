"""Real image work for the stand-ins: a disparity map from an image, and animations from both."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


class NotAnImage(ValueError):
    pass


def decode_image(data: bytes) -> np.ndarray:
    """RGB pixels as uint8, or NotAnImage."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as exc:  # Pillow raises several types for undecodable input
        raise NotAnImage(str(exc)) from exc


def disparity_map(rgb: np.ndarray, bit_depth: str = "uint8", dilation: float = 0.0063) -> bytes:
    """A plausible disparity PNG: bright (near) at the bottom and where the image is bright,
    smoothed by a box blur whose radius grows with `dilation`."""
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    height = gray.shape[0]
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    depth = 0.6 * ramp + 0.4 * (gray / 255.0)
    radius = max(1, int(abs(dilation) * max(gray.shape)))
    kernel = np.ones(2 * radius + 1, dtype=np.float32) / (2 * radius + 1)
    depth = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, depth)
    depth = (depth - depth.min()) / max(float(np.ptp(depth)), 1e-6)
    if bit_depth == "uint16":
        img = Image.fromarray((depth * 65535).astype(np.uint16))
    else:
        img = Image.fromarray((depth * 255).astype(np.uint8), mode="L")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _frames(rgb: np.ndarray, disparity: np.ndarray, count: int, amplitude: float) -> list[np.ndarray]:
    """Parallax frames: pixels shift sideways in proportion to their disparity."""
    h, w = rgb.shape[:2]
    disp = np.asarray(Image.fromarray(disparity).convert("L").resize((w, h)), dtype=np.float32) / 255.0
    cols = np.arange(w)[None, :]
    frames = []
    for i in range(count):
        phase = np.sin(2 * np.pi * i / count)
        shift = (phase * amplitude * 0.02 * w * disp).astype(np.int32)
        src = np.clip(cols - shift, 0, w - 1)
        frames.append(rgb[np.arange(h)[:, None], src])
    return frames


def animation(rgb: np.ndarray, disparity_png: bytes, kind: str = "mp4", length: int = 4,
              amplitude: float = 1.0, fps: int = 10) -> bytes:
    disparity = np.asarray(Image.open(io.BytesIO(disparity_png)))
    if disparity.dtype != np.uint8:
        disparity = (disparity.astype(np.float32) / 257).astype(np.uint8)
    frames = _frames(rgb, disparity, count=max(4, 2 * length), amplitude=amplitude)
    out = io.BytesIO()
    if kind == "gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)
        return out.getvalue()
    import av  # only the mp4 path needs FFmpeg

    h, w = frames[0].shape[:2]
    container = av.open(out, "w", format="mp4")
    stream = container.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
    for f in frames:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: stream.height, : stream.width]), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return out.getvalue()
