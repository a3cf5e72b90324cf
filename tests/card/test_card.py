"""Model cards from real exported packages: content, hostile manifests, the package's extra/, a browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import modelpack
from modelpack._cli import main
from modelpack._package import open_package

pytest.importorskip("modelpack_sklearn", reason="the cards are drawn for packages exported from scikit-learn")
pd = pytest.importorskip("pandas", reason="the card's package is exported from a DataFrame")

HOSTILE = '<script>alert("x")</script>\'"><img src=x onerror=alert(1)>'
YAML_BREAK = "mit\n---\nlibrary_name: evil"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """An exported classifier over a DataFrame with a string column, its manifest full of hostile strings."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"size": rng.normal(size=80), f"colour{HOSTILE}": rng.choice(["red", "gr<e>en"], 80)})
    y = np.where(df["size"] > 0, f"big{HOSTILE}", "small|`x`")
    clf = make_pipeline(make_column_transformer((StandardScaler(), ["size"]),
                                                (OneHotEncoder(), [f"colour{HOSTILE}"])),
                        LogisticRegression()).fit(df, y)
    path = tmp_path_factory.mktemp("card") / "hostile.mpk"
    modelpack.export(clf, path, sample=df[:40], name=f"m{HOSTILE}", version="1.0.0",
                     description=f"[click](javascript:alert(1)) {HOSTILE}", card=True,
                     metadata={"intended_use": f"Teaching {HOSTILE}", "license": YAML_BREAK,
                               "tags": ["tabular", HOSTILE], "accuracy": 0.93, "contact": HOSTILE,
                               "metrics": {"auc": 0.97}, "commit": HOSTILE})
    return path


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


def _parsed(html: str) -> _Collect:
    parser = _Collect()
    parser.feed(html)
    return parser


def test_export_puts_the_card_in_extra_listed_and_checksummed(exported):
    manifest = modelpack.inspect(exported)
    names = {"extra/card/README.md", "extra/card/card.html"}
    assert names <= set(manifest.extra)
    assert names <= {f.path for f in manifest.files}
    with open_package(exported) as pkg:  # checksums verified while opening
        stored = pkg.read_bytes("extra/card/card.html").decode()
    assert "Fidelity certificate" in stored and "Sample predictions" in stored


def test_the_card_says_what_the_manifest_says(exported):
    with modelpack.load(exported) as m:
        card = m.card()
    md = card.markdown
    for section in ("# Model description", "## Intended uses & limitations", "## Inputs", "## Outputs",
                    "## Fidelity certificate", "## Placement forecast", "## Provenance", "## Signature",
                    "## Sample predictions", "## Evaluation results"):
        assert section in md
    assert "gr&lt;e&gt;en" in md            # the string column's categories, escaped
    assert "| auc | 0.97 |" in md and "| accuracy | 0.93 |" in md
    assert "Not signed." in md
    assert "scikit-learn" in md and "skl2onnx" in md
    assert re.search(r"label → .*P\(big", md)  # probability columns named by class
    rows = [line for line in md.splitlines() if line.startswith("| ") and "small" in line]
    assert rows, "the sample table shows recorded labels"


def test_front_matter_is_yaml_that_hostile_values_cannot_break(exported):
    yaml = pytest.importorskip("yaml")
    with modelpack.load(exported) as m:
        md = m.card().markdown
    assert md.startswith("---\n")
    front = yaml.safe_load(md.split("\n---\n", 1)[0][4:])
    assert front["license"] == YAML_BREAK
    assert front["library_name"] == "onnx" and front["pipeline_tag"] == "tabular-classification"
    assert HOSTILE in front["tags"] and "modelpack" in front["tags"]
    assert front["model_file"] == "model.onnx"
    widget = front["widget"][0]["structuredData"]  # the first sample rows, by column
    assert set(widget) == {"size", f"colour{HOSTILE}"} and len(widget["size"]) == 3
    assert set(widget[f"colour{HOSTILE}"]) <= {"red", "gr<e>en"}


def test_markdown_renders_to_no_live_html_or_links(exported):
    markdown = pytest.importorskip("markdown", reason="Python-Markdown (modelpack[docs]) renders the README")
    with modelpack.load(exported) as m:
        md = m.card().markdown
    html = markdown.markdown(md.split("\n---\n", 1)[1], extensions=["tables"])
    parsed = _parsed(html)
    assert {"script", "a", "iframe"}.isdisjoint(parsed.tags)
    assert parsed.tags.count("img") == 1  # the plot
    assert not [name for name, _ in parsed.attrs if name.startswith("on")]
    assert HOSTILE in "".join(parsed.text)
    assert parsed.tags.count("table") == 7  # inputs, outputs, fidelity, metrics, provenance, samples, other


def test_html_escapes_everything_and_loads_nothing(exported):
    with modelpack.load(exported) as m:
        html = m.card().html
    parsed = _parsed(html)
    assert "script" not in parsed.tags and "iframe" not in parsed.tags and "link" not in parsed.tags
    assert [tag for tag in parsed.tags if tag == "img"] == ["img"]  # the plot, and nothing injected
    assert all(not (value or "").startswith(("http", "//", "javascript")) for _, value in parsed.attrs)
    assert not [name for name, _ in parsed.attrs if name.startswith("on")]
    assert HOSTILE in "".join(parsed.text)  # shown as text, whole
    assert "Content-Security-Policy" in html


def test_notebook_display_is_a_sandboxed_frame(exported):
    with modelpack.load(exported) as m:
        card = m.card(plots=False)
    parsed = _parsed(card._repr_html_())
    assert parsed.tags == ["iframe"]  # the whole page sits in srcdoc, escaped: no tag of it leaks out
    attrs = dict(parsed.attrs)
    assert attrs["sandbox"] == "" and attrs["srcdoc"] == card.html
    assert repr(card).startswith("<ModelCard m<script>") and "no plots" in repr(card)


def test_card_without_matplotlib_is_complete_but_the_plot(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with modelpack.load(exported) as m:
        card = m.card()
    assert card.images == {}
    assert 'pip install "modelpack[card]"' in card.markdown and "fidelity.png" not in card.markdown
    assert "<img" not in card.html and "## Sample predictions" in card.markdown


def test_plot_is_a_png_of_the_per_row_differences(exported):
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (modelpack[card])")
    with modelpack.load(exported) as m:
        card = m.card()
    png = card.images["fidelity.png"]
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert "![Per-row differences" in card.markdown


def test_cli_writes_the_card(exported, tmp_path, capsys):
    assert main(["card", str(exported), "-o", str(tmp_path / "c"), "--no-plots"]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["README.md", "card.html"]
    assert "wrote" in capsys.readouterr().out


def test_card_of_a_packed_file_without_certificate_or_samples(add_one, tmp_path):
    assert main(["pack", str(add_one), str(tmp_path / "a.mpk"), "--name", "adder", "--card"]) == 0
    assert "extra/card/card.html" in modelpack.inspect(tmp_path / "a.mpk").extra
    with modelpack.load(tmp_path / "a.mpk") as m:
        card = m.card()
    assert "No certificate" in card.markdown and "No samples stored" in card.markdown
    assert card.images == {}


def test_hostile_samples_leave_a_note_not_a_crash(exported, tmp_path):
    from modelpack._card import build_card

    manifest = modelpack.inspect(exported)
    with open_package(exported) as pkg:
        files = {f.path: pkg.read_bytes(f.path) for f in manifest.files}
    files[manifest.samples.inputs] = b"PK\x03\x04 not an npz"
    card = build_card(manifest, files.__getitem__, package="x", signature="Not signed.")
    assert "could not be read" in card.markdown


def test_odd_sample_arrays_give_a_card(exported):
    from modelpack._card import build_card
    from modelpack._formats.samples import write_samples

    manifest = modelpack.inspect(exported)
    with open_package(exported) as pkg:
        files = {f.path: pkg.read_bytes(f.path) for f in manifest.files}
    files[manifest.samples.outputs] = write_samples({"label": np.zeros((40, 0), np.float32),
                                                      "probabilities": np.full((3, 2), np.nan, np.float32)})
    files[manifest.samples.reference] = write_samples({"label": np.zeros((0,), np.float32)})
    card = build_card(manifest, files.__getitem__, package="x", signature="Not signed.")
    samples = card.markdown.split("## Sample predictions", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in samples.splitlines() if line.startswith("| "))
    assert header.startswith("| size |") and "→" not in header  # the inputs; no output had rows to show
    assert len([line for line in samples.splitlines() if line.startswith("| ")]) == 6  # header and 5 rows
    assert card.images == {}  # no output with per-row differences to draw


def test_a_user_extra_file_in_the_card_folder_is_refused(add_one, tmp_path):
    note = tmp_path / "n.md"
    note.write_text("mine")
    with pytest.raises(modelpack.PackageError, match="overwritten by the model card"):
        modelpack.pack(add_one, tmp_path / "a.mpk", extra={"card/README.md": note}, card=True)
    assert not (tmp_path / "a.mpk").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on the PATH (apt-get install chromium) to render the card")
def test_card_renders_in_a_headless_browser_without_console_messages(exported, tmp_path):
    with modelpack.load(exported) as m:
        m.card().save(tmp_path / "card")
    shot = tmp_path / "shot.png"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr", "--v=0", "--log-level=0", "--window-size=1100,2000"]
    url = (tmp_path / "card" / "card.html").as_uri()
    done = subprocess.run([*args, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000, done.stderr
    # Script errors, blocked loads and CSP violations all reach the console.
    assert not [line for line in done.stderr.splitlines() if ":CONSOLE" in line], done.stderr
    dom = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    parsed = _parsed(dom)
    assert "script" not in parsed.tags and HOSTILE in "".join(parsed.text)
    assert json.dumps("Fidelity certificate")[1:-1] in dom
