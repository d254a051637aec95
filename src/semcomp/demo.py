"""``semcomp demo``: a complete study from images the package draws itself.

Nine scenes in three of the textual-transform paper's categories; JPEG and
WebP sweeps (the paper's ~80 %/~90 % reductions plus a quality ladder); two
textual transforms, human captions written for the scenes and BLIP captions,
both reconstructed with a diffusion model, and the human captions again with the
best of 4 reconstructions chosen by CLIP at the encoder (its index costs 2 bits);
CLIP similarity and PSNR, and the report.
So that every page has something to show, it also imports *simulated* Survey
A/B/C ratings (a stated random model around each candidate's CLIP score, see
:mod:`semcomp.surveys.simulated`; labelled "simulated ratings" wherever they
appear) and writes a PQVAE evaluation file (``pqvae/demo-eval.json``).

Each model family uses the real default when its weights are cached or the hub
is reachable (CLIP ViT-L/14@336px, BLIP base, SD-Turbo); otherwise the demo
says so in one line and uses a tiny random-weight model of the same
architecture, and the study and report are marked "random weights — numbers
are not meaningful".
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from semcomp.config import STUDY_FILE, EmbedderConfig

if TYPE_CHECKING:
    from semcomp.store import Store

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from semcomp.errors import ModelUnavailableError

SIZE = (512, 384)
#: the PQVAE codec's drawn scenes (CLIP sees them at its own input size anyway)
PQVAE_SCENE_SIZE = (128, 96)

DEMO_METHODS_TOML = """
[[methods]]
name = "jpeg"
codec = "jpeg"
reduction = [0.8, 0.9]
quality = [5, 15, 30, 50, 75, 90]

[[methods]]
name = "webp"
codec = "webp"
reduction = [0.8, 0.9]
quality = [5, 15, 30, 50, 75, 90]
"""


def _texture(rng: np.random.Generator, strength: float, size: tuple[int, int]) -> np.ndarray:
    """Smooth noise at a few scales, like the texture of a photographed surface."""
    width, height = size
    total = np.zeros((height, width), np.float32)
    for cells, weight in ((6, 1.0), (24, 0.5), (96, 0.25)):
        coarse = rng.normal(size=(cells * height // width + 1, cells)).astype(np.float32)
        image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        total += weight * np.asarray(image)
    total += rng.normal(scale=0.35, size=total.shape).astype(np.float32)
    return total * strength


def _finish(
    canvas: Image.Image, rng: np.random.Generator, size: tuple[int, int], strength: float = 6.0
) -> Image.Image:
    """The drawn ``canvas`` at ``size`` (shrunk before its texture is added), textured and
    softened."""
    if canvas.size != size:
        canvas = canvas.resize(size, Image.Resampling.BOX)
    pixels = np.asarray(canvas, np.float32) + _texture(rng, strength, size)[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.6)
    )


def _sky_and_ground(draw: ImageDraw.ImageDraw, sky: tuple, ground: tuple, horizon: int) -> None:
    width, height = SIZE
    for y in range(height):
        top = y < horizon
        base = sky if top else ground
        fade = (y / horizon) if top else (y - horizon) / max(1, height - horizon)
        colour = tuple(int(c * (0.75 + 0.25 * fade)) for c in base)
        draw.line([(0, y), (width, y)], fill=colour)


def _single_object(
    rng: np.random.Generator, variant: int, size: tuple[int, int] = SIZE
) -> Image.Image:
    canvas = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(canvas)
    _sky_and_ground(draw, (200, 190, 170), (120, 90, 60), 250)
    cx, cy = 256 + rng.integers(-60, 60), 220
    colour = [(200, 30, 40), (240, 200, 40), (40, 90, 200)][variant]
    if variant == 0:  # an apple on a table
        draw.ellipse([cx - 70, cy - 65, cx + 70, cy + 70], fill=colour)
        draw.rectangle([cx - 4, cy - 95, cx + 4, cy - 60], fill=(90, 60, 20))
        draw.ellipse([cx + 5, cy - 95, cx + 45, cy - 75], fill=(60, 140, 50))
    elif variant == 1:  # a mug
        draw.rectangle([cx - 55, cy - 70, cx + 55, cy + 70], fill=colour)
        draw.ellipse([cx + 40, cy - 40, cx + 95, cy + 30], outline=colour, width=14)
        draw.ellipse([cx - 55, cy - 85, cx + 55, cy - 55], fill=(60, 40, 20))
    else:  # a ball
        draw.ellipse([cx - 80, cy - 80, cx + 80, cy + 80], fill=colour)
        draw.arc([cx - 80, cy - 30, cx + 80, cy + 30], 0, 180, fill=(250, 250, 250), width=8)
    return _finish(canvas, rng, size)


def _multiple_objects(
    rng: np.random.Generator, variant: int, size: tuple[int, int] = SIZE
) -> Image.Image:
    canvas = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(canvas)
    _sky_and_ground(draw, (150, 170, 190), (90, 110, 80), 120 + 40 * variant)
    palette = [(220, 60, 50), (250, 210, 60), (60, 120, 210), (240, 240, 240), (40, 40, 40)]
    for _ in range(8 + 4 * variant):
        x, y = int(rng.integers(20, SIZE[0] - 60)), int(rng.integers(140, SIZE[1] - 40))
        side = int(rng.integers(18, 55))
        colour = palette[int(rng.integers(len(palette)))]
        if rng.random() < 0.5:
            draw.ellipse([x, y, x + side, y + side], fill=colour)
        else:
            draw.rectangle([x, y, x + side, y + int(side * 0.7)], fill=colour)
    return _finish(canvas, rng, size)


def _landscape(rng: np.random.Generator, variant: int, size: tuple[int, int] = SIZE) -> Image.Image:
    canvas = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(canvas)
    skies = [(110, 160, 220), (240, 150, 90), (40, 50, 90)]
    _sky_and_ground(draw, skies[variant], (60, 110, 60), 230)
    width = SIZE[0]
    for layer, shade in enumerate(((90, 100, 120), (70, 90, 80))):
        ridge = [(0, 240)]
        for x in range(0, width + 64, 64):
            ridge.append((x, int(120 + 40 * layer + rng.integers(-50, 50))))
        ridge.append((width, 240))
        draw.polygon(ridge, fill=shade)
    if variant != 2:  # sun; night gets a moon
        draw.ellipse([380, 40, 440, 100], fill=(255, 235, 150))
    else:
        draw.ellipse([390, 40, 430, 80], fill=(230, 230, 210))
    draw.polygon([(180, 384), (250, 240), (270, 240), (330, 384)], fill=(120, 160, 200))
    return _finish(canvas, rng, size, strength=8.0)


#: each draws a scene (at ``SIZE``, or shrunk to a smaller ``size`` before its texture)
SCENES: dict[str, Callable[..., Image.Image]] = {
    "single_object": _single_object,
    "multiple_objects": _multiple_objects,
    "landscape": _landscape,
}


def write_sample_images(folder: Path, seed: int = 0, per_category: int = 3) -> list[Path]:
    """Draw ``per_category`` (at most 3) scenes per category into ``folder/<category>/``
    (PNG, and the third of each as a high-quality JPEG)."""
    paths = []
    for category, draw_scene in SCENES.items():
        (folder / category).mkdir(parents=True, exist_ok=True)
        for variant in range(per_category):
            path = folder / category / f"{category}_{variant + 1}.{'png' if variant < 2 else 'jpg'}"
            if not path.exists():
                image = draw_scene(np.random.default_rng([seed, variant, len(category)]), variant)
                # zlib's default level: optimize=True made files 11 % smaller at 4× the time
                image.save(path, **({} if path.suffix == ".png" else {"quality": 95}))
            paths.append(path)
    return paths


#: captions written for the scenes by a person, following the paper's protocol (a-f)
SCENE_CAPTIONS = {
    "single_object_1": "a red apple with a short stem and a green leaf on a brown wooden table "
    "against a beige wall",
    "single_object_2": "a yellow mug of coffee on a brown wooden table against a beige wall",
    "single_object_3": "a blue ball with a white stripe on a brown wooden table against a beige "
    "wall",
    "multiple_objects_1": "small red, yellow, blue and white balls and boxes scattered on green "
    "grass under a grey sky",
    "multiple_objects_2": "colourful balls and boxes scattered on a green lawn under a pale sky",
    "multiple_objects_3": "many red, yellow, black and white balls and boxes scattered on a green "
    "field under a grey sky",
    "landscape_1": "grey mountains and a blue river in a green valley under a blue sky with a "
    "pale sun",
    "landscape_2": "dark mountains and a river in a green valley under an orange sunset sky",
    "landscape_3": "dark mountains and a river in a valley at night under a navy sky with a moon",
}

#: what stands out in each scene (Survey C's simulated answers aim at these)
SCENE_FACTS = {
    "single_object_1": (("apple", "table", "leaf", "wall"), "lies on", ("Calm", "Warm")),
    "single_object_2": (("mug", "coffee", "table", "wall"), "stands on", ("Calm", "Warm")),
    "single_object_3": (("ball", "table", "wall"), "rests on", ("Cheerful", "Calm")),
    "multiple_objects_1": (("balls", "boxes", "grass", "sky"), "are scattered on", ("Busy",)),
    "multiple_objects_2": (("balls", "boxes", "lawn"), "lie on", ("Busy", "Cheerful")),
    "multiple_objects_3": (("balls", "boxes", "field"), "are spread over", ("Busy", "Energetic")),
    "landscape_1": (("mountains", "river", "valley", "sun"), "flows through", ("Peaceful",)),
    "landscape_2": (("mountains", "river", "sunset"), "runs below", ("Warm", "Pleasing")),
    "landscape_3": (("mountains", "river", "moon"), "shines over", ("Dark", "Calm", "Eerie")),
}

#: the human captions, best of 4 reconstructions by the study's CLIP (candidate 0 is
#: human-captions' own image, so 3 more per scene are drawn); PSNR shows it without the
#: optimism of scoring with the metric that selected
BEST_OF_METHOD = "human-captions-best-of-4"

DEMO_CAPTIONER = "Salesforce/blip-image-captioning-base"
DEMO_RECONSTRUCTOR = "stabilityai/sd-turbo"


def _textual_methods_toml(root: Path, say: Callable[[str], None]) -> tuple[str, bool]:
    """Human-caption and BLIP methods; tiny random-weight models when the real ones are absent."""
    from semcomp.models import hf_model_available

    captions = root / "captions.csv"
    with captions.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption", "author"])
        for name, text in SCENE_CAPTIONS.items():
            writer.writerow([name, text, "semcomp demo"])
    random_weights = False
    if hf_model_available(DEMO_CAPTIONER):
        blip = DEMO_CAPTIONER
    else:
        say(f"{DEMO_CAPTIONER} is not available offline: using a tiny random-weight BLIP")
        blip, random_weights = "tiny", True  # built in models/ when the run needs it
    if hf_model_available(DEMO_RECONSTRUCTOR):
        diffusion = f'model = "{DEMO_RECONSTRUCTOR}", steps = 1, guidance = 0.0'
    else:
        say(
            f"{DEMO_RECONSTRUCTOR} is not available offline: using a tiny random-weight "
            "Stable Diffusion"
        )
        diffusion = 'model = "tiny", steps = 1, width = 64, height = 64'
        random_weights = True
    flag = "random_weights = true\n" if random_weights else ""
    toml = f"""
[[methods]]
name = "human-captions"
captioner = "human"
captioner_params = {{ csv = "captions.csv", protocol = "Arikan & Weissman a-f" }}
reconstructor_params = {{ {diffusion} }}
{flag}
[[methods]]
name = "blip"
captioner = "blip"
captioner_params = {{ model = "{blip}" }}
reconstructor_params = {{ {diffusion} }}
{flag}
[[methods]]
name = "{BEST_OF_METHOD}"
captioner = "human"
captioner_params = {{ csv = "captions.csv", protocol = "Arikan & Weissman a-f" }}
reconstructor_params = {{ {diffusion} }}
select = {{ n = [4], by = "clip" }}
{flag}"""
    if random_weights and diffusion.startswith('model = "tiny"'):
        toml += _side_information_toml(diffusion, say)
    return toml, random_weights


def _side_information_toml(diffusion: str, say: Callable[[str], None]) -> str:
    """The human captions plus a Canny edge sketch, reconstructed by a tiny ControlNet
    beside the tiny Stable Diffusion (only offline: no real ControlNet matches SD-Turbo)."""
    from semcomp.codecs.side import EDGES_PACKAGE

    try:
        import cv2  # noqa: F401
    except ImportError:
        say(f"{EDGES_PACKAGE} is not installed: the demo has no side-information method")
        return ""
    return f"""
[[methods]]
name = "human-captions+edges"
captioner = "human"
captioner_params = {{ csv = "captions.csv", protocol = "Arikan & Weissman a-f" }}
reconstructor = "diffusers-controlnet"
reconstructor_params = {{ {diffusion}, controlnet = "tiny" }}
side = "edges"
side_params = {{ size = [96] }}
random_weights = true
"""


def _pqvae_method_toml(
    root: Path,
    similarity_toml: str,
    random_weights: bool,
    say: Callable[[str], None],
    size: DemoSize,
) -> str:
    """A small PQVAE-shared trained here, in seconds, on CLIP embeddings of drawn scenes.

    A toy codec (a few hundred training embeddings, a small network, 200 bits):
    it shows an embedding codec on the rate axis next to JPEG and captions, not
    the paper's numbers; its checkpoint records how it was made. Its zero-shot
    accuracy on 30 more drawn scenes (3 classes, prompts "a picture of a
    landscape", ...) is written to ``pqvae/demo-eval.json`` for the
    Embedding-codecs page and the report.
    """
    from semcomp.codecs.pqvae.data import EmbeddingSet
    from semcomp.codecs.pqvae.model import PQVAEConfig
    from semcomp.codecs.pqvae.train import TrainConfig, Trainer
    from semcomp.config import parse_config
    from semcomp.metrics.clip import OpenClipEmbedder

    checkpoint = root / "models" / "pqvae" / "best.safetensors"
    if not checkpoint.exists():
        data = {
            "images": {"source": "."},
            "methods": [{"name": "x", "codec": "jpeg", "quality": [1]}],
        }
        if similarity_toml:
            data |= tomllib.loads(similarity_toml)
        embedder_config = parse_config(data, "demo", root).similarity.models[0]
        images, labels = [], []
        scenes = size.pqvae_scenes
        for label, draw_scene in enumerate(SCENES.values()):
            for seed in range(1, scenes + 1):  # (of 40) 1-30 train the codec, 31-40 evaluate it
                rng = np.random.default_rng([seed, label, 7])
                images.append(draw_scene(rng, seed % 3, size=PQVAE_SCENE_SIZE))
                labels.append(label)
        held_out = np.arange(len(images)) % scenes >= scenes * 3 // 4
        trained_on = int((~held_out).sum())
        say(f"training a small PQVAE-shared codec on {trained_on} CLIP embeddings of drawn scenes")
        embedder = OpenClipEmbedder(embedder_config, device="auto", batch_size=32)
        try:
            everything = embedder.embed(images)
            prompts = [f"a picture of {'a ' if c[-1] != 's' else ''}{c}" for c in SCENES]
            text = embedder.embed_texts([p.replace("_", " ") for p in prompts])
        finally:
            embedder.close()
        embeddings, labels = everything[~held_out], np.array(labels)
        evaluation = EmbeddingSet(everything[held_out], labels[held_out], list(SCENES))
        labels = labels[~held_out]
        config = PQVAEConfig(
            input_dim=embeddings.shape[1], hidden=(64, 32), residual_hidden=16, channels=16, d_sub=4
        )
        trained = Trainer(
            config,
            TrainConfig(
                epochs=size.pqvae_epochs,
                lr=3e-3,
                split="random",
                validation=0.2,
                patience=5,
                kmeans_init=True,
                reinit_dead=True,
            ),
            EmbeddingSet(embeddings, np.array(labels), list(SCENES)),
            None,
            checkpoint.parent,
            clip={
                "model": embedder_config.portable_model,
                "pretrained": embedder_config.pretrained,
            },
            log=lambda _: None,
            progress=False,
        ).train()
        _write_pqvae_evaluation(trained, evaluation, text, root / "pqvae" / "demo-eval.json")
    flag = "random_weights = true\n" if random_weights else ""
    return f"""
[[methods]]
name = "pqvae-demo"
checkpoint = "models/pqvae/best.safetensors"
entropy_coder = "ans"
{flag}"""


def _write_pqvae_evaluation(checkpoint, data, text: np.ndarray, path: Path) -> None:
    """Zero-shot accuracy and exact rate of the demo codec with two entropy coders."""
    import json
    from dataclasses import asdict

    from semcomp.codecs.pqvae.evaluate import evaluate

    results = [asdict(evaluate(checkpoint, data, text, coder)) for coder in ("ans", "fixed")]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def add_simulated_ratings(
    store: Store, folder: Path, say: Callable[[str], None] = print
) -> list[str]:
    """Write simulated Survey A, B and C results as MTurk batch-results files in ``folder``,
    import them through the real importer and mark the surveys "simulated ratings".

    The random model is :mod:`semcomp.surveys.simulated`'s; returns the files imported.
    """
    from semcomp.surveys.definitions import load_survey
    from semcomp.surveys.importer import import_ratings
    from semcomp.surveys.simulated import SIMULATED, SceneFacts, mark_simulated
    from semcomp.surveys.simulated import write_simulated_results as write

    facts = {name: SceneFacts(*entry) for name, entry in SCENE_FACTS.items()}
    imported = []
    for survey in map(load_survey, "ABC"):
        path = folder / f"simulated_{survey.id}_batch_results.csv"
        if not write(store, survey, path, facts=facts):
            say(f"survey {survey.id}: no candidate has a CLIP score, no {SIMULATED}")
            continue
        with store.transaction():  # labelled before any of them is in the store
            mark_simulated(store, survey.id)
        summary = import_ratings(store, path, survey)
        say(f"survey {survey.id}: imported {summary.kept} {SIMULATED} from {path.name}")
        imported.append(str(path))
    return imported


@dataclass(frozen=True)
class DemoSize:
    """How much the demo draws, encodes and trains: the defaults are ``semcomp demo``'s; the
    tests build the same study smaller (fewer scenes, operating points and epochs)."""

    #: scenes per category in the study (at most 3)
    per_category: int = 3
    #: the pixel methods' table
    pixel_methods: str = DEMO_METHODS_TOML
    #: drawn scenes per category the PQVAE codec sees: three quarters train it, the rest
    #: evaluate it
    pqvae_scenes: int = 40
    pqvae_epochs: int = 15


@dataclass
class DemoOutcome:
    root: Path
    random_weights: bool
    note: str


def _similarity_toml(root: Path, say: Callable[[str], None]) -> tuple[str, bool, str]:
    """The study's similarity section: the real default CLIP if it can be had, else a tiny one."""
    from semcomp.metrics.clip import fetch_open_clip_weights
    from semcomp.tiny_models import ensure_tiny_model

    default = EmbedderConfig()
    try:
        fetch_open_clip_weights(default)
        return "", False, f"CLIP {default.label}"
    except ModelUnavailableError:
        note = (
            f"CLIP {default.label} weights are not available offline: using a tiny "
            "random-weight CLIP (random weights — numbers are not meaningful)"
        )
        say(note)
        ensure_tiny_model(root, "clip")  # the PQVAE codec is trained on its embeddings
        toml = "[similarity]\nbatch_size = 64\n\n[[similarity.models]]\nmodel = 'tiny'\n"
        return toml, True, note


def _metrics_toml(similarity_toml: str) -> str:
    """PSNR beside CLIP. MS-SSIM and LPIPS are left out: on the demo's 162 image pairs at
    512×384 they cost about 60 s and 80 s of two CPU cores (benchmarks/RESULTS.md)."""
    # with [[metrics]], a study has only the CLIP models it names: keep the default one
    clip = "" if similarity_toml else '[[metrics]]\nmetric = "clip"\n\n'
    return clip + '[[metrics]]\nmetric = "psnr"\n'


def prepare_demo(
    root: Path, say: Callable[[str], None] = print, size: DemoSize = DemoSize()
) -> DemoOutcome:
    """Create (or reuse) the demo study folder with its images and ``study.toml``."""
    from semcomp.study import write_study_file

    root = root.resolve()
    images = root / "images"
    write_sample_images(images, per_category=size.per_category)
    if (root / STUDY_FILE).exists():
        from semcomp.config import load_config

        config = load_config(root)
        random_weights = any(m.random_weights for m in config.metric_entries) or any(
            m.random_weights for m in config.methods
        )
        return DemoOutcome(root, random_weights, "reusing the existing demo study")
    similarity, random_similarity, note = _similarity_toml(root, say)
    textual, random_textual = _textual_methods_toml(root, say)
    embedding = _pqvae_method_toml(root, similarity, random_similarity, say, size)
    metrics = _metrics_toml(similarity)
    write_study_file(
        root,
        images,
        name="semcomp demo",
        methods_toml=size.pixel_methods + textual + embedding,
        similarity_toml=f"{similarity}\n{metrics}",
    )
    random_weights = random_similarity or random_textual
    return DemoOutcome(root, random_weights, note)
