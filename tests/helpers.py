"""Helpers the tests share (images that compress like photos, study files)."""

import contextlib
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth gradients plus fine noise (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            128 + 100 * np.sin(x / (7 + seed) + y / 13),
            128 + 100 * np.cos(y / (11 + seed)),
            128 + 80 * np.sin((x + y) / 17),
        ],
        axis=-1,
    )
    noisy = base + rng.normal(scale=12, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_image_folder(root: Path) -> Path:
    """Four photos (160 x 120) in two category folders under ``root``."""
    for category, seeds in (("landscape", (1, 2)), ("single_object", (3, 4))):
        (root / category).mkdir(parents=True)
        for seed in seeds:
            photo(160, 120, seed).save(root / category / f"img{seed}.png")
    return root


def write_study(
    root: Path,
    images: Path,
    tiny_clip: str,
    methods: str = '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [30, 70]\n',
    extra: str = "",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.toml").write_text(
        f'name = "test"\nseed = 0\n{extra}\n[images]\nsource = "{images.as_posix()}"\n\n{methods}\n'
        f"[similarity]\nbatch_size = 4\n\n[[similarity.models]]\n"
        f"model = '{tiny_clip}'\nname = 'tiny'\nrandom_weights = true\n"
    )
    return root


def rows(root: Path, sql: str) -> list[tuple]:
    """The rows ``sql`` selects from the study store at ``root``, read directly (no Store)
    and read-only (it works in a read-only folder too)."""
    conn = sqlite3.connect(f"file:{root / 'study.db'}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    """The bytes of ``image`` saved in format ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_hostile_images(folder: Path) -> dict[str, bool]:
    """Real-world awkward files in ``folder``; returns file name → whether it should ingest."""
    folder.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    jpeg = encoded(photo(200, 150), "JPEG", quality=90)
    files = {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], False),
        "cmyk.jpg": (encoded(Image.new("CMYK", (32, 24), (0, 255, 255, 0)), "JPEG"), True),
        "sixteen_bit.png": (
            encoded(
                Image.fromarray((np.arange(64 * 48, dtype=np.uint16) * 20).reshape(48, 64)), "PNG"
            ),
            True,
        ),
        "palette_transparent.png": (encoded(palette, "PNG", transparency=0), True),
        "rotated.jpg": (encoded(photo(60, 20), "JPEG", exif=exif.tobytes()), True),
        "animated.gif": (gif.getvalue(), True),
        "one_pixel.png": (encoded(Image.new("RGB", (1, 1)), "PNG"), True),
        "not_an_image.jpg": (b"plain text pretending to be a JPEG", False),
        "bomb.png": (encoded(Image.new("1", (10_000, 8_000)), "PNG"), False),
        "photo.tiff": (encoded(photo(40, 30), "TIFF"), True),
        "photo.bmp": (encoded(photo(40, 30), "BMP"), True),
        "photo.webp": (encoded(photo(40, 30), "WEBP"), True),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: ok for name, (_, ok) in files.items()}


HUMAN_METRICS = {
    "human.A.median[similarity]": "median Survey A rating (1-10): semantic satisfaction index",
    "human.A.mean[similarity]": "mean Survey A rating (1-10)",
    "human.B.mean[objects]": "mean Survey B rating (1-5): same objects/elements/people",
}


def add_human_scores(root: Path, seed: int = 0, methods: tuple[str, ...] | None = None) -> int:
    """Insert human-rating score rows (as the MTurk import writes them) for image candidates.

    Ratings follow the candidate's CLIP score plus noise, so agreement is positive
    but imperfect; returns the number of candidates rated.
    """
    from semcomp.store import Store, utc_now

    rng = np.random.default_rng(seed)
    with Store(root) as store, store.transaction():
        for name, description in HUMAN_METRICS.items():
            store.upsert(
                "metrics",
                {
                    "name": name,
                    "embedder_id": None,
                    "formula": name.split("[")[0],
                    "description": description,
                },
                key=("name",),
            )
        rows = store.frame(
            "SELECT c.id, m.name AS method, s.value FROM candidates c "
            "JOIN representations r ON r.id = c.representation_id "
            "JOIN methods m ON m.id = r.method_id "
            "JOIN scores s ON s.candidate_id = c.id AND s.metric LIKE 'clip_cos[%' "
            "WHERE m.kind != 'embedding'"
        )
        if methods is not None:
            rows = rows[rows["method"].isin(methods)]
        ranks = rows["value"].rank(pct=True).to_numpy()
        for candidate, rank in zip(rows["id"], ranks, strict=True):
            ratings = np.clip(np.round(1 + 9 * rank + rng.normal(0, 1.5, 20)), 1, 10)
            values = {
                "human.A.median[similarity]": float(np.median(ratings)),
                "human.A.mean[similarity]": float(ratings.mean()),
                "human.B.mean[objects]": float(np.clip(1 + 4 * rank + rng.normal(0, 0.5), 1, 5)),
            }
            for metric, value in values.items():
                store.upsert(
                    "scores",
                    {
                        "candidate_id": candidate,
                        "metric": metric,
                        "value": value,
                        "run_id": None,
                        "created_at": utc_now(),
                    },
                    key=("candidate_id", "metric"),
                )
    return len(rows)


#: ends each command's output in :func:`semcomp_in_one_process`, followed by its exit status
COMMAND_END = "--- semcomp command ended with exit status"
_COMMANDS = f"""
import json as _json, sys as _sys
from semcomp.cli import main as _main
for _command in _json.loads(_sys.argv[1]):
    try:
        _main(_command)
        _status = 0
    except SystemExit as _exit:
        _status = _exit.code
    _sys.stderr.flush()
    print("\\n" + {COMMAND_END!r}, _status, flush=True)
"""


def semcomp_in_one_process(
    commands: list[list[str]], before: str = "", after: str = ""
) -> list[str]:
    """The argv of one Python process that runs each of ``commands`` (``semcomp`` command
    lines) through ``semcomp.cli.main``, one after another, with the Python code ``before``
    run first and ``after`` last: a separate process per command costs seconds of imports
    each. Its stdout splits into each command's output and exit status with
    :func:`command_outputs`."""
    return [sys.executable, "-c", before + _COMMANDS + after, json.dumps(commands)]


def command_outputs(stdout: str) -> tuple[list[tuple[str, int]], str]:
    """``([(output, exit status) of each command], what ``after`` printed)`` of the stdout of
    a :func:`semcomp_in_one_process` process."""
    *parts, rest = re.split(rf"\n{re.escape(COMMAND_END)} (-?\d+)\n", stdout)
    return [(out, int(status)) for out, status in zip(parts[::2], parts[1::2], strict=True)], rest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def app_answers(url: str) -> bool:
    """Whether a Streamlit server answers its health check at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
            return answer.read() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def serving_app(study: Path, log_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``(url, process)`` of `semcomp app STUDY` on a free port, in a process group of its
    own (stopped with everything it started on leaving); fails the test if it never answers."""
    import pytest

    port = free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "semcomp", "app", str(study), "--port", str(port),
             "--no-browser"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # whatever it starts can be stopped with it
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not app_answers(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"semcomp app did not start: {log_path.read_text()}")
                time.sleep(0.5)
            yield url, server
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)


def write_uneven_study(base: Path, tiny_clip: str) -> Path:
    """A finished study in which a ``bytes`` target is too small for the two large originals
    (their smallest JPEG is larger), beside a WebP quality sweep and imported
    reconstructions without captions (no rate). Four originals, two per category."""
    from semcomp.study import Study

    images, external = base / "images", base / "study" / "external"
    external.mkdir(parents=True)
    for offset, category in enumerate(("landscape", "person")):
        (images / category).mkdir(parents=True)
        for index, (width, height) in enumerate(((48, 32), (240, 180))):
            name, seed = f"{category}_{index + 1}", 2 * offset + index
            photo(width, height, seed).save(images / category / f"{name}.png")
            photo(64, 64, seed + 10).save(external / f"{name}_gr.png")
    methods = (
        '[[methods]]\nname = "jpeg-bytes"\ncodec = "jpeg"\nbytes = [1000, 50000]\n\n'
        '[[methods]]\nname = "webp-q"\ncodec = "webp"\nquality = [20, 80]\n\n'
        '[[methods]]\nname = "dalle-gr"\nfolder = "external"\npattern = "{name}_gr.png"\n'
    )
    root = write_study(base / "study", images, tiny_clip, methods=methods)
    with Study.open(root) as study:
        summary = study.run(progress=False)
    assert len(summary.failures) == 2, summary.failures  # 1000 bytes on both large originals
    return root


def train_pqvae(folder: Path, tiny_clip: str) -> Path:
    """A tiny PQVAE-shared checkpoint (one epoch on random 32-d features) for the tiny
    CLIP's embeddings, in ``folder``."""
    from semcomp.codecs.pqvae.data import EmbeddingSet
    from semcomp.codecs.pqvae.model import PQVAEConfig
    from semcomp.codecs.pqvae.train import TrainConfig, Trainer

    rng = np.random.default_rng(0)
    training = EmbeddingSet(rng.normal(size=(256, 32)), rng.integers(0, 8, 256))
    config = PQVAEConfig(input_dim=32, hidden=(32, 16), residual_hidden=8, channels=8, d_sub=4)
    Trainer(
        config,
        TrainConfig(epochs=1, lr=1e-3, split="random"),
        training,
        None,
        folder,
        clip={"model": tiny_clip, "pretrained": "openai"},
        progress=False,
        log=lambda _: None,
    ).train()
    return folder / "best.safetensors"
