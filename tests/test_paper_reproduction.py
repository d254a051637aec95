"""The README's "Reproducing the textual-transform paper" recipe, run on a look-alike of the
paper's data repository with tiny random-weight models and a fake OpenAI endpoint."""

import re
from pathlib import Path

import pandas as pd

from fake_openai import FakeOpenAIServer
from paper_repo import JPEG_LEVELS, build_paper_repo
from semcomp.report import write_report
from semcomp.study import Study

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
KEY_ENV = "TEST_PAPER_OPENAI_KEY"


def recipe() -> tuple[str, str]:
    """The section's manifest snippet (Python) and its study.toml."""
    section = README.split("## Reproducing the textual-transform paper", 1)[1].split("\n## ")[0]
    (python,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (toml,) = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    return python, toml


def with_tiny_models(toml: str, tiny_clip: str, tiny_blip: Path, tiny_sd: Path, url: str) -> str:
    """The recipe's study file with each real model swapped for a tiny or fake one."""
    swaps = {
        'captioner_params = { model = "Salesforce/blip-image-captioning-base" }': (
            f'captioner_params = {{ model = "{tiny_blip}", max_new_tokens = 10 }}'
        ),
        'model = "stabilityai/sd-turbo", steps = 1, guidance = 0.0': (
            f'model = "{tiny_sd}", steps = 2, guidance = 0.0, width = 64, height = 64'
        ),
        'api_key_env = "OPENAI_API_KEY" }': f'api_key_env = "{KEY_ENV}", base_url = "{url}" }}',
        'model = "gpt-image-2", size = "1024x1024"': (
            f'model = "gpt-image-2", size = "1024x1024", api_key_env = "{KEY_ENV}", '
            f'base_url = "{url}"'
        ),
        'model = "ViT-L-14-336"\npretrained = "openai"': (
            f"model = '{tiny_clip}'\nname = 'tiny'\nrandom_weights = true"
        ),
    }
    for real, tiny in swaps.items():
        assert real in toml, real
        toml = toml.replace(real, tiny)
    return toml


def test_the_readme_recipe_reproduces_the_paper_layout(
    tmp_path, monkeypatch, tiny_clip, tiny_blip, tiny_sd
):
    repo = build_paper_repo(tmp_path / "textualtransform24", size=(48, 40))
    python, toml = recipe()
    monkeypatch.chdir(tmp_path)
    exec(compile(python, "README.md", "exec"), {})  # writes textualtransform24/originals.csv
    monkeypatch.setenv(KEY_ENV, "sk-test-key-000000")
    with FakeOpenAIServer() as server:
        study_file = with_tiny_models(toml, tiny_clip, tiny_blip, tiny_sd, server.base_url)
        (repo.root / "study.toml").write_text(study_file)
        with Study.open(repo.root) as study:
            summary = study.run(progress=False)
        with Study.open(repo.root, read_only=True) as study:
            files = write_report(study, rate="bytes")
    rd = pd.read_csv(files.rd_csv, keep_default_na=False, na_values=[""])
    present = sorted(repo.originals)
    assert len(present) == 14 and repo.missing not in present
    # every method covers exactly the originals present, once per original
    per_method = rd.groupby(["method", "operating_point"])["original"].apply(sorted)
    for (method, point), originals in per_method.items():
        assert originals == present, (method, point)
    assert set(per_method.index) == {
        ("paper-jpeg-low", "q1"),
        ("paper-jpeg-high", "q11"),
        ("paper-gpt4-dalle2", "caption"),
        ("paper-blip-dalle2", "caption"),
        ("paper-human-dalle2", "caption"),
        ("jpeg", "quality=1"),
        ("jpeg", "quality=11"),
        ("blip-sd", "caption"),
        ("llm-dalle2-prompt", "caption"),
    }
    # the paper's JPEG rows carry the published files' exact byte sizes
    for method, label in zip(("paper-jpeg-low", "paper-jpeg-high"), JPEG_LEVELS, strict=True):
        rows = rd[rd.method == method].set_index("original")
        sizes = {name: repo.compressed[(name, label)].stat().st_size for name in present}
        assert rows.rate_bytes.to_dict() == sizes
        assert set(rows.codec) == {"jpeg"}
    # the DALL-E methods are in rd.csv, with an empty rate and a CLIP score
    dalle = rd[rd.method.str.startswith("paper-") & rd.method.str.endswith("-dalle2")]
    assert len(dalle) == 3 * len(present)
    assert dalle.rate_bits.isna().all() and set(dalle.codec) == {"dall-e-2"}
    clip = next(c for c in rd.columns if c.startswith("clip_(cos+1)/2["))
    assert rd[clip].notna().all()
    # semcomp's own methods have exact rates; lossless originals are marked
    ours = rd[rd.method.isin(["jpeg", "blip-sd", "llm-dalle2-prompt"])]
    assert ours.rate_bits.notna().all()
    formats = rd.drop_duplicates("original").set_index("original").original_format
    assert formats["object_2"] == "PNG" and formats["scattered_1"] == "WEBP-lossless"
    # the missing original's files are listed, one per method that has them
    stray = [label for _, label, reason in summary.failures if "matches no original" in reason]
    assert len(stray) == 5 and all(repo.missing in label for label in stray)
    assert all("matches no original" in r for _, _, r in summary.failures)  # nothing else failed
    failures = pd.read_csv(files.failures_csv)
    assert (failures.reason.str.contains("matches no original")).sum() == 5
    # Table 1 has the paper's JPEG rows with the files' mean bytes
    table = pd.read_csv(files.folder / "table1.csv").set_index("method")
    low = rd[rd.method == "paper-jpeg-low"].rate_bytes.mean()
    assert table.loc["paper-jpeg-low", "size_bytes_mean"] == low
    assert table.loc["paper-jpeg-low", "codec"] == "jpeg"
    # the DALL-E methods, which have no rate, are not dropped: Table 1 keeps them with
    # size "—", the report's README names them, and the figure draws them as bands
    from semcomp.analysis.figures import NO_RATE_LABEL, rd_chart
    from semcomp.analysis.rd import summarise
    from semcomp.analysis.table1 import NO_SIZE

    dalle_methods = ["paper-blip-dalle2", "paper-gpt4-dalle2", "paper-human-dalle2"]
    for method in dalle_methods:
        assert table.loc[method, "size"] == NO_SIZE and pd.isna(
            table.loc[method, "size_bytes_mean"]
        )
    readme = (files.folder / "README.txt").read_text(encoding="utf-8")
    assert all(method in readme for method in dalle_methods)
    summary_rows = pd.read_csv(files.summary_csv)
    assert set(dalle_methods) <= set(summary_rows.method)
    figure = rd_chart(rd, summarise(rd), clip, rate="bytes")
    legend = figure.axes[0].get_legend_handles_labels()[1]
    assert all(
        any(label.startswith(method) and NO_RATE_LABEL in label for label in legend)
        for method in dalle_methods
    ), legend
