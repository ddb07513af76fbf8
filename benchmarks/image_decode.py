"""Image decode benchmark (issue 10): which library decodes the JPEG/PNG inputs of binary-input requests.

Candidates, each used the way ``ovmsd.serving.images`` would use it (BGR, HWC, uint8):

* ``opencv``: ``cv2.imdecode`` (opencv-python-headless; OVMS itself decodes with OpenCV), ``cv2.resize`` (bilinear).
* ``pillow``: ``Image.open(...).convert("RGB")`` then the raw ``BGR`` packer, ``Image.resize`` (bilinear).
* ``simplejpeg``: ``decode_jpeg(colorspace="BGR")`` (libjpeg-turbo, JPEG only: PNG would need a second library);
  resized with ``cv2.resize`` when OpenCV is installed.

Measured on real photos from ``shared/assets/images`` (ImageNet samples ~250x200, COCO/road ~600-960 px, people
1200x800, scikit-image PNGs 300-741 px), with every candidate installed that imports:

(a) decode only, per image, by size class (median of ``--repeats`` runs, ms);
(b) the whole per-request job: decode + resize to 224x224 + float32 conversion of a batch of 1 and of 8 photos,
    sequential and on a thread pool of ``os.cpu_count()`` workers (ms per batch, median);
(c) whether decoding releases the GIL: a pure-Python counter's rate in the main thread while another thread
    decodes 1200x800 JPEGs, relative to its rate alone (1.0 = released; ~0.5 or lower = held on 2 cores);
(d) the refusal of a PNG whose header claims 100000x100000 pixels through ``ovmsd.serving.images`` (ms, and the
    peak RSS growth, which must stay near 0: nothing is allocated);
(e) what each library costs to install: installed size (from its dist-info RECORD) and its requirements;
(f) ``ovmsd.serving.images.decode_images`` itself (headers, decode, resize, float32), batch 1 and 8 to a
    224x224x3 FP32 input, ms per batch: in the calling thread only, always split over the pool and the calling
    thread, and with the default ``PARALLEL_MIN_PIXELS`` (what it chooses). Threads only pay with a free core: the
    load average at start and end is in the JSON (the machine is shared).

Usage::

    .venv/bin/python benchmarks/image_decode.py              # ~1 minute on 2 cores
    .venv/bin/python benchmarks/image_decode.py --quick      # smoke run
    .venv/bin/python benchmarks/image_decode.py --markdown   # tables for BENCHMARKS.md

Results: ``benchmarks/results/image_decode.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))

import numpy as np
from common import REPO, fmt, git_state, machine_info, median, print_table, write_json

ASSETS = REPO.parent / "shared" / "assets" / "images"
RESULTS = REPO / "benchmarks" / "results" / "image_decode.json"

Decoder = Callable[[bytes], np.ndarray]
Resizer = Callable[[np.ndarray, int, int], np.ndarray]


# -- candidates ----------------------------------------------------------------------------------------------------


def candidates() -> dict[str, dict[str, Any]]:
    """Every installed candidate: its decoder (bytes -> BGR HWC uint8), resizer, and which formats it decodes."""
    found: dict[str, dict[str, Any]] = {}
    cv2_resize: Resizer | None = None
    try:
        import cv2

        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION

        def cv2_decode(data: bytes) -> np.ndarray:
            return cv2.imdecode(np.frombuffer(data, np.uint8), flags)

        def cv2_resize_(image: np.ndarray, h: int, w: int) -> np.ndarray:
            return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)

        cv2_resize = cv2_resize_
        found["opencv"] = {
            "decode": cv2_decode,
            "resize": cv2_resize_,
            "formats": ("jpeg", "png"),
            "dist": "opencv-python-headless",
            "version": cv2.__version__,
        }
    except ImportError:
        pass
    try:
        import PIL
        from PIL import Image

        def pil_decode(data: bytes) -> np.ndarray:
            with Image.open(io.BytesIO(data)) as im:
                rgb = im.convert("RGB") if im.mode != "RGB" else im
                raw = rgb.tobytes("raw", "BGR")
                return np.frombuffer(raw, np.uint8).reshape(rgb.height, rgb.width, 3)

        def pil_resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
            # Pillow resizes its own images: BGR bytes travel as an RGB image (channel order does not matter here).
            im = Image.frombuffer("RGB", (image.shape[1], image.shape[0]), image.tobytes(), "raw", "RGB", 0, 1)
            return np.asarray(im.resize((w, h), Image.Resampling.BILINEAR))

        found["pillow"] = {
            "decode": pil_decode,
            "resize": pil_resize,
            "formats": ("jpeg", "png"),
            "dist": "pillow",
            "version": PIL.__version__,
        }
    except ImportError:
        pass
    try:
        import simplejpeg

        def sj_decode(data: bytes) -> np.ndarray:
            return simplejpeg.decode_jpeg(data, colorspace="BGR")

        found["simplejpeg"] = {
            "decode": sj_decode,
            "resize": cv2_resize,
            "formats": ("jpeg",),
            "dist": "simplejpeg",
            "version": simplejpeg.__version__,
        }
    except ImportError:
        pass
    return found


# -- photos --------------------------------------------------------------------------------------------------------


def photos() -> dict[str, list[tuple[str, bytes]]]:
    """The sample photos by size class: small (ImageNet), medium, large JPEGs, and PNGs."""
    classes: dict[str, list[tuple[str, bytes]]] = {"jpeg small": [], "jpeg medium": [], "jpeg large": [], "png": []}
    for path in sorted(ASSETS.rglob("*")):
        suffix = path.suffix.lower()
        if suffix not in (".jpg", ".jpeg", ".png"):
            continue
        data = path.read_bytes()
        if suffix == ".png":
            classes["png"].append((path.name, data))
        elif len(data) < 50_000:
            classes["jpeg small"].append((path.name, data))
        elif path.parent.name == "people":
            classes["jpeg large"].append((path.name, data))
        else:
            classes["jpeg medium"].append((path.name, data))
    return {k: v for k, v in classes.items() if v}


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in ms, after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return median(samples) * 1e3


# -- (a) decode only -----------------------------------------------------------------------------------------------


def bench_decode(libs: dict[str, dict[str, Any]], sets: dict[str, list[tuple[str, bytes]]], repeats: int) -> list:
    rows = []
    for klass, images in sets.items():
        fmt_name = "png" if klass == "png" else "jpeg"
        pixels = median([libs_any_shape(libs, data) for _, data in images])
        row: dict[str, Any] = {"class": klass, "images": len(images), "median_mpix": pixels / 1e6}
        for lib, spec in libs.items():
            if fmt_name not in spec["formats"]:
                row[lib] = None
                continue
            decode = spec["decode"]
            per_image = [timed(lambda d=data, f=decode: f(d), repeats) for _, data in images]
            row[lib] = median(per_image)
        rows.append(row)
    return rows


def libs_any_shape(libs: dict[str, dict[str, Any]], data: bytes) -> int:
    for spec in libs.values():
        try:
            image = spec["decode"](data)
            return int(image.shape[0] * image.shape[1])
        except Exception:
            continue
    return 0


# -- (b) the per-request job, batch 1 and 8, sequential and threaded --------------------------------------------


def bench_batches(libs: dict[str, dict[str, Any]], sets: dict[str, list[tuple[str, bytes]]], repeats: int) -> list:
    rows = []
    workers = os.cpu_count() or 2
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for klass in ("jpeg small", "jpeg large", "png"):
            images = [data for _, data in sets.get(klass, [])]
            if not images:
                continue
            fmt_name = "png" if klass == "png" else "jpeg"
            for batch in (1, 8):
                chosen = [images[i % len(images)] for i in range(batch)]
                for lib, spec in libs.items():
                    if fmt_name not in spec["formats"] or spec["resize"] is None:
                        continue
                    decode, resize = spec["decode"], spec["resize"]

                    def one(data: bytes, decode: Decoder = decode, resize: Resizer = resize) -> np.ndarray:
                        return resize(decode(data), 224, 224).astype(np.float32)

                    def sequential(chosen: list[bytes] = chosen, one: Callable = one) -> np.ndarray:
                        return np.stack([one(d) for d in chosen])

                    def threaded(chosen: list[bytes] = chosen, one: Callable = one) -> np.ndarray:
                        return np.stack(list(pool.map(one, chosen)))

                    seq = timed(sequential, repeats)
                    par = timed(threaded, repeats) if batch > 1 else None
                    rows.append(
                        {
                            "class": klass,
                            "batch": batch,
                            "library": lib,
                            "sequential_ms": seq,
                            "threaded_ms": par,
                            "speedup": (seq / par) if par else None,
                            "ms_per_image": seq / batch,
                        }
                    )
    finally:
        pool.shutdown()
    return rows


# -- (c) the GIL ---------------------------------------------------------------------------------------------------


def spin_rate(seconds: float) -> float:
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        count += 1
    return count / seconds


def bench_gil(libs: dict[str, dict[str, Any]], sets: dict[str, list[tuple[str, bytes]]], seconds: float) -> list:
    big = [data for _, data in sets.get("jpeg large", sets.get("jpeg medium", []))]
    if not big:
        return []
    rows = []
    for lib, spec in libs.items():
        alone = spin_rate(seconds)
        stop = threading.Event()
        decoded = 0

        def work(decode: Decoder = spec["decode"], stop: threading.Event = stop) -> None:
            nonlocal decoded
            while not stop.is_set():
                decode(big[decoded % len(big)])
                decoded += 1

        thread = threading.Thread(target=work)
        thread.start()
        time.sleep(0.05)
        beside = spin_rate(seconds)
        stop.set()
        thread.join()
        rows.append({"library": lib, "python_rate_ratio": beside / alone, "decodes": decoded})
    return rows


# -- (d) the bomb --------------------------------------------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + chunk(b"IEND", b"")
    )


def bench_bomb(repeats: int) -> dict[str, Any]:
    try:
        from ovmsd.config.models import Dim
        from ovmsd.errors import ServingError
        from ovmsd.serving.images import decode_images
        from ovmsd.serving.signature import TensorSpec
    except ImportError as exc:
        return {"error": f"ovmsd.serving.images: {exc}"}
    spec = TensorSpec(
        "x",
        frozenset({"x"}),
        "FP32",
        np.dtype(np.float32),
        (Dim.dynamic(), Dim.dynamic(), Dim.dynamic(), Dim.static(3)),
    )
    bomb = np.empty(1, dtype=object)
    bomb[0] = png_header(100_000, 100_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def refuse() -> None:
        try:
            decode_images(bomb, spec)
        except ServingError:
            return
        raise AssertionError("the bomb was decoded")

    ms = timed(refuse, repeats)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return {"claimed_pixels": 100_000 * 100_000, "refusal_ms": ms, "peak_rss_growth_kib": grown_kib}


# -- (f) the module itself: its pool against one thread --------------------------------------------------------


def bench_module(sets: dict[str, list[tuple[str, bytes]]], repeats: int) -> list:
    try:
        from ovmsd.config.models import Dim
        from ovmsd.serving.images import POOL_WORKERS, decode_images
        from ovmsd.serving.signature import TensorSpec
    except ImportError:
        return []
    dims = (Dim.dynamic(), Dim.static(224), Dim.static(224), Dim.static(3))
    spec = TensorSpec("x", frozenset({"x"}), "FP32", np.dtype(np.float32), dims)
    rows = []
    for klass in ("jpeg small", "jpeg large", "png"):
        images = [data for _, data in sets.get(klass, [])]
        if not images:
            continue
        for size in (1, 8):
            array = np.empty(size, dtype=object)
            array[:] = [images[i % len(images)] for i in range(size)]
            calling = timed(lambda a=array: decode_images(a, spec, parallel_min_pixels=1 << 62), repeats)
            split = timed(lambda a=array: decode_images(a, spec, parallel_min_pixels=0), repeats)
            default = timed(lambda a=array: decode_images(a, spec), repeats)
            rows.append(
                {
                    "class": klass,
                    "batch": size,
                    "calling_thread_ms": calling,
                    "split_ms": split,
                    "default_ms": default,
                    "threads": POOL_WORKERS + 1,
                    "split_speedup": calling / split,
                }
            )
    return rows


# -- (e) what each library costs to install ------------------------------------------------------------------------


def install_cost(libs: dict[str, dict[str, Any]]) -> list:
    rows = []
    for lib, spec in libs.items():
        dist = metadata.distribution(spec["dist"])
        size = 0
        for file in dist.files or []:
            path = Path(str(file.locate()))
            if path.is_file():
                size += path.stat().st_size
        requires = [r for r in (dist.requires or []) if "extra ==" not in r]
        rows.append(
            {
                "library": lib,
                "dist": spec["dist"],
                "version": dist.version,
                "installed_mib": size / 2**20,
                "requires": requires,
            }
        )
    return rows


# -- main ----------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 15)
    libs = candidates()
    if not libs:
        sys.exit("no candidate library is installed (opencv-python-headless, pillow, simplejpeg)")
    sets = photos()
    if not sets:
        sys.exit(f"no photos under {ASSETS}")
    names = list(libs)
    md = args.markdown

    decode_rows = bench_decode(libs, sets, repeats)
    print_table(
        ["photos", "n", "Mpix", *[f"{n} ms" for n in names]],
        [[r["class"], r["images"], fmt(r["median_mpix"], 2), *[fmt(r[n], 2) for n in names]] for r in decode_rows],
        title="(a) decode only, median ms per image (BGR uint8)",
        markdown=md,
    )
    batch_rows = bench_batches(libs, sets, repeats)
    print_table(
        ["photos", "batch", "library", "sequential ms", f"{os.cpu_count()} threads ms", "speedup", "ms/image"],
        [
            [
                r["class"],
                r["batch"],
                r["library"],
                fmt(r["sequential_ms"], 2),
                fmt(r["threaded_ms"], 2),
                fmt(r["speedup"], 2),
                fmt(r["ms_per_image"], 2),
            ]
            for r in batch_rows
        ],
        title="(b) decode + resize 224x224 + float32, per batch",
        markdown=md,
    )
    gil_rows = bench_gil(libs, sets, 0.5 if args.quick else 1.5)
    print_table(
        ["library", "python rate beside decoding", "decodes"],
        [[r["library"], fmt(r["python_rate_ratio"], 2), r["decodes"]] for r in gil_rows],
        title="(c) GIL: a Python loop's rate while another thread decodes 1200x800 JPEGs (1.0 = released)",
        markdown=md,
    )
    bomb = bench_bomb(repeats)
    print_table(
        ["claimed pixels", "refusal ms", "peak RSS growth KiB"],
        [[bomb.get("claimed_pixels", "-"), fmt(bomb.get("refusal_ms"), 3), bomb.get("peak_rss_growth_kib", "-")]],
        title="(d) a PNG header claiming 100000x100000, refused by ovmsd.serving.images",
        markdown=md,
    )
    cost_rows = install_cost(libs)
    print_table(
        ["library", "dist", "version", "installed MiB", "requires"],
        [
            [r["library"], r["dist"], r["version"], fmt(r["installed_mib"], 1), ", ".join(r["requires"]) or "-"]
            for r in cost_rows
        ],
        title="(e) install cost",
        markdown=md,
    )
    module_rows = bench_module(sets, repeats)
    print_table(
        ["photos", "batch", "calling thread ms", "split ms", "default ms", "split speedup"],
        [
            [
                r["class"],
                r["batch"],
                fmt(r["calling_thread_ms"], 2),
                fmt(r["split_ms"], 2),
                fmt(r["default_ms"], 2),
                fmt(r["split_speedup"], 2),
            ]
            for r in module_rows
        ],
        title="(f) ovmsd.serving.images.decode_images to 224x224x3 FP32: calling thread, split over threads, default",
        markdown=md,
    )
    load_end = Path("/proc/loadavg").read_text().split()[:3]
    path = write_json(
        args.out,
        {
            "benchmark": "image_decode",
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git": git_state(),
            "machine": machine_info(),
            "repeats": repeats,
            "libraries": {n: libs[n]["version"] for n in names},
            "decode": decode_rows,
            "batches": batch_rows,
            "gil": gil_rows,
            "bomb": bomb,
            "install": cost_rows,
            "module": module_rows,
            "loadavg_at_end": load_end,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
