"""Every command of the README's "Reproducing the PQVAE paper" runs, on small generated datasets
in the layouts it names (tiny CLIP, one epoch, fewer sweep points: options appended below)."""

import json
import re
import shlex
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import dataset_layouts as layouts
from semcomp.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def paper_commands() -> list[list[str]]:
    section = README.split("## Reproducing the PQVAE paper", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    return [shlex.split(line) for line in block.strip().splitlines()]


def fig6_study() -> tuple[str, list[list[str]]]:
    """The Fig. 6 study file of the section and the commands that run and report it."""
    section = README.split("## Reproducing the PQVAE paper", 1)[1].split("\n## ", 1)[0]
    item = textwrap.dedent("  " + section.split("- **Fig. 6**", 1)[1])
    toml = re.findall(r"```toml\n(.*?)```", item, flags=re.S)[0]
    commands = re.findall(r"```bash\n(.*?)```", item, flags=re.S)[0]
    return toml, [shlex.split(line) for line in commands.strip().splitlines()]


def fig6_for_the_test(toml: str, tiny_clip: str) -> str:
    """The study file with the tiny CLIP the features were extracted with, and one quality
    of Cheng2020-anchor with random weights."""
    clip = 'model = "ViT-L-14-336"\npretrained = "openai"'
    assert toml.count(clip) == 2
    toml = toml.replace(clip, f'model = "{tiny_clip}"\npretrained = "openai"')
    learned = 'quality = [1, 2, 3, 4, 5, 6]\nparams = { model = "cheng2020-anchor" }'
    assert learned in toml
    return toml.replace(
        learned,
        'quality = [1]\nparams = { model = "cheng2020-anchor", weights = "random" }\n'
        "random_weights = true",
    )


def for_the_test(command: list[str], tiny_clip: str) -> list[str]:
    """The README's command with test-sized settings: a tiny CLIP, one prompt, one epoch,
    two d_sub values and one K in the sweeps."""
    assert command[0] == "semcomp"
    args = command[1:]
    if args[:2] == ["features", "extract"]:
        return [*args, "--model", tiny_clip, "--workers", "0", "--templates", "single",
                "--no-progress"]  # fmt: skip
    if args[:2] == ["pqvae", "train"]:
        return [*args, "--epochs", "1", "--lr", "1e-3", "--no-progress"]
    if args[:2] == ["pqvae", "sweep"]:
        kept, d_subs, i = [], 0, 0
        while i < len(args):
            if args[i] == "--k":
                i += 2
                continue
            if args[i] == "--d-sub":
                d_subs += 1
                if d_subs > 2:
                    i += 2
                    continue
            kept.append(args[i])
            i += 1
        return [*kept, "--k", "4", "--epochs", "1", "--lr", "1e-3", "--no-progress"]
    return args


def run(args: list[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 0, args


@pytest.mark.slow
def test_the_readme_reproduction_commands_run(tmp_path, tiny_clip, monkeypatch, capsys):
    data = tmp_path / "data"
    wnids = [
        "n01440764", "n01443537", "n01484850", "n01491361", "n01494475",
        "n02085620", "n02123045", "n04254120", "n07753592", "n15075141",
    ]  # fmt: skip
    layouts.imagenet_torchvision(data / "imagenet", wnids)
    layouts.oxford_pets(data / "oxford-pets")
    layouts.caltech101(data / "caltech-101")
    layouts.tiny_imagenet(data / "tiny-imagenet")
    layouts.food101(data / "food-101")
    monkeypatch.chdir(tmp_path)
    commands = paper_commands()
    assert [c[1:3] for c in commands].count(["features", "extract"]) == 5
    for command in commands:
        run(for_the_test(command, tiny_clip))
    capsys.readouterr()
    # the reference schedule's checkpoint says how it was trained and selected
    from semcomp.codecs.pqvae.checkpoint import load_checkpoint

    reference = load_checkpoint(tmp_path / "runs" / "pq-ref" / "best.safetensors")
    assert reference.training["train"]["schedule"] == "reference"
    assert reference.config.conv_bias is False
    # eval on Pets: all 37 breeds compete, bpd and bpp as the paper and per image
    pets = json.loads((tmp_path / "pets.json").read_text())
    assert pets["classes"] == 37 and pets["class_set"] == "all"
    assert pets["fixed_bits"] == 400 and pets["fixed_bpd"] == pytest.approx(400 / 32)
    assert pets["fixed_bpp_of_mean_pixels"] == pytest.approx(400 / (40 * 32))
    assert pets["bpp_per_image"] == pytest.approx(pets["bits_mean"] / (40 * 32))
    # Table 1: a block per dataset, nominal and coded bpd side by side
    table = pd.read_csv(tmp_path / "table1" / "table1.csv", index_col=0)
    blocks = {row.split(": ")[0] for row in table.index}
    assert blocks == {
        "held-out",
        "oxford-pets test",
        "caltech-101 all",
        "tiny-imagenet val",
        "food-101 test",
    }
    assert "held-out: pqvae-shared (d_sub=16)" in table.index
    nominal = f"{400 / 32:.3f}".rstrip("0").rstrip(".")
    assert f"{nominal} bpd: top1" in table.columns and f"{nominal} bpd: coded bpd" in table.columns
    assert "oxford-pets test: scalar" in table.index
    # the ablation: one curve per d_sub
    ablation = pd.read_csv(tmp_path / "ablation" / "ablation.csv")
    assert sorted(ablation["d_sub"].unique()) == [4, 8]
    assert (tmp_path / "ablation" / "ablation.png").exists()

    # Fig. 6: a study of Pets' test images, every method's zero-shot accuracy against bpp
    toml, commands = fig6_study()
    (tmp_path / "pets-fig6").mkdir()
    (tmp_path / "pets-fig6" / "study.toml").write_text(fig6_for_the_test(toml, tiny_clip))
    assert [c[:2] for c in commands] == [["semcomp", "run"], ["semcomp", "report"]]
    for command in commands:
        run(command[1:])
    capsys.readouterr()
    figure = pd.read_csv(tmp_path / "pets-fig6" / "report" / "zero_shot_bpp.csv")
    assert (tmp_path / "pets-fig6" / "report" / "zero_shot_bpp.png").exists()
    kinds = dict(zip(figure["method"], figure["kind"], strict=False))
    assert kinds == {"cheng2020-anchor": "pixel", "jpeg": "pixel", "pqvae": "embedding"}
    assert set(figure["n"]) == {6}  # the test split's two images of each of three breeds
    assert len(figure[figure["method"] == "jpeg"]) == 5
