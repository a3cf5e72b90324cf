"""The card as Markdown (Hugging Face's model-card layout) and as one self-contained HTML page.

Every string comes from the package and is escaped for where it lands: YAML
values are JSON strings (a subset of YAML's double-quoted scalars, so a value
cannot end the front matter), Markdown prose has its markup characters and
HTML escaped, names sit in code spans, and the HTML page escapes everything,
loads nothing from outside and forbids scripts with a Content-Security-Policy.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from .._display import shape_text
from .facts import FRONT_MATTER_FIELDS, Facts, text
from .plots import PLOT_EXTRA

__all__ = ["PLOT_FILE", "html_page", "markdown"]

PLOT_FILE = "fidelity.png"
_PIPELINE_TAGS = {"classification": "tabular-classification", "regression": "tabular-regression"}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~!])")
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.7rem}h2{font-size:1.25rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:14px}th,td{border:1px solid #d0d7de;padding:.2rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}code{font-size:13px;background:#f6f8fa;padding:0 .2rem}
.ok{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}.note{color:#57606a}
.wrap{overflow-x:auto}img{max-width:100%}pre{background:#f6f8fa;padding:.5rem;white-space:pre-wrap}"""


# -- escaping -------------------------------------------------------------------------
def md(value: str) -> str:
    """Prose for Markdown: one line, markup characters backslash-escaped, HTML escaped."""
    one_line = " ".join(str(value).split())
    return escape(_MD_SPECIAL.sub(r"\\\1", one_line), quote=False)


def md_code(value: str) -> str:
    """A name as a code span: a fence longer than any backtick run inside, ``|`` escaped for tables."""
    one_line = " ".join(str(value).split()).replace("|", "\\|")
    fence = "`" * (max((len(r) for r in re.findall("`+", one_line)), default=0) + 1)
    pad = " " if one_line.startswith("`") or one_line.endswith("`") else ""
    return f"{fence}{pad}{one_line}{pad}{fence}" if one_line else ""


def _yaml(value: Any) -> str:
    return _yaml_json(text(value, 500))


# An escaped backslash (kept), or the JSON surrogate pair of a character past U+FFFF.
_SURROGATES = re.compile(r"\\\\|\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _pair(match: re.Match[str]) -> str:
    if match.group(1) is None:
        return match.group(0)
    high, low = int(match.group(1), 16), int(match.group(2), 16)
    return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"


def _yaml_json(value: Any) -> str:
    """JSON in ASCII as YAML reads it: YAML decodes a JSON surrogate pair as two broken characters,
    so a character past U+FFFF (an emoji) is written as YAML's own ``\\U`` escape."""
    return _SURROGATES.sub(_pair, json.dumps(value, ensure_ascii=True, allow_nan=False, default=str))


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- Markdown -----------------------------------------------------------------------------
def front_matter(f: Facts) -> str:
    m = f.manifest
    tags = ["modelpack", m.model.format] + ([_PIPELINE_TAGS[m.task]] if m.task in _PIPELINE_TAGS else [])
    lines = ["---"]
    if m.model.format == "onnx":
        lines.append("library_name: onnx")
    if m.task in _PIPELINE_TAGS:
        lines.append(f"pipeline_tag: {_PIPELINE_TAGS[m.task]}")
    user_tags = m.metadata.get("tags")
    tags += [text(t, 100) for t in user_tags] if isinstance(user_tags, list) else []
    lines += ["tags:"] + [f"- {_yaml(t)}" for t in tags]
    for key in FRONT_MATTER_FIELDS:
        value = m.metadata.get(key)
        if value is None or key == "tags":
            continue
        if isinstance(value, list):
            lines += [f"{key}:"] + [f"- {_yaml(v)}" for v in value[:50]]
        else:
            lines.append(f"{key}: {_yaml(value)}")
    lines += [f"model_format: {m.model.format}", f"model_file: {_yaml(m.model.file)}"]
    if f.widget:  # Hugging Face's example inputs for tabular models, as skops writes them
        lines += ["widget:", "- structuredData:"] + [
            f"    {_yaml(name)}: {_yaml_json(values)}"
            for name, values in f.widget.items()]
    lines.append("---")
    return "\n".join(lines)


def markdown(f: Facts, *, plot: bool) -> str:
    """README.md: YAML front matter, then the sections in Hugging Face's order."""
    m = f.manifest
    parts = [front_matter(f), f"# {md(m.name)} {md(m.version)}", "## Model description",
             md(m.description) or "_No description was given._",
             f"A {md(m.task)} model in {md(m.model.format.upper())}, packaged by modelpack: it loads with "
             "`modelpack.load` on any machine, without its training framework and without pickle."]
    parts += ["## Intended uses & limitations"] + _md_sections(f, ("Intended uses", "Limitations"),
                                                              "_The package's metadata says nothing about "
                                                              "intended uses (metadata key `intended_use`)._")
    parts += ["## Inputs", _md_table(["column", "dtype", "kind", "categories"],
                                     [[md_code(c["name"]), md(c["dtype"]), md(c["kind"]), md(c["categories"])]
                                      for c in f.columns])]
    parts += ["## Outputs", _md_table(["name", "dtype", "shape", "role"],
                                      [[md_code(o.name), md(o.dtype), md(shape_text(o.shape)), md(o.role or "")]
                                       for o in m.outputs])]
    if m.classes:
        parts.append("Classes, in `predict_proba` column order: " + ", ".join(md_code(str(c)) for c in m.classes[:50]))
    parts += ["## Fidelity certificate", _md_fidelity(f, plot)]
    parts += ["## Evaluation results", _md_table(["metric", "value"], [[md(k), md(v)] for k, v in f.metrics.items()])
              if f.metrics else "_No metrics in the package's metadata._"]
    head, *devices = f.placement.splitlines() or [""]
    parts += ["## Placement forecast", md(head), "\n".join(f"- {md(line)}" for line in devices)]
    parts += ["## Provenance", _md_table(["", "value"], [[md(k), md(v)] for k, v in f.provenance]),
              "## Signature", md(f.signature)]
    parts += ["## Sample predictions", _md_samples(f)]
    parts += ["## How to get started with the model",
              "```python\nimport modelpack\n\nmodel = modelpack.load(\"PACKAGE.mpk\")\n"
              "model.predict(rows)   # a DataFrame, a dict of columns, records or numpy\n```"]
    parts += _md_sections(f, ("Training data", "Evaluation data", "Model card authors", "Contact", "Citation"), "")
    if f.other_metadata:
        parts += ["## Other metadata", _md_table(["key", "value"], [[md(k), md(v)] for k, v in f.other_metadata.items()])]
    parts += [f"> {md(n)}" for n in f.notes]
    return "\n\n".join(p for p in parts if p) + "\n"


def _md_sections(f: Facts, titles: Sequence[str], empty: str) -> list[str]:
    found = [f"### {t}\n\n{md(f.sections[t])}" if t in ("Intended uses", "Limitations")
             else f"## {t}\n\n{md(f.sections[t])}" for t in titles if t in f.sections]
    return found or ([empty] if empty else [])


def _md_fidelity(f: Facts, plot: bool) -> str:
    fid = f.manifest.fidelity
    if fid is None:
        return "_No certificate: the package was packed from a file, not exported from a framework model._"
    head = (f"**{'Passed' if fid.passed else 'FAILED'}** on {fid.rows} sample rows"
            + (f", exported as {md(fid.dtype)}" if fid.dtype else "") + ": the exported model against the "
            "source model, output by output.")
    rows = [[md_code(o.output), "ok" if o.passed else "FAIL", f"{o.max_abs_diff:.3g}", f"{o.max_rel_diff:.3g}",
             "" if o.tolerance is None else f"{o.tolerance:.3g}",
             "" if o.label_agreement is None else f"{o.label_agreement:.2%}", str(o.worst_row)] for o in fid.outputs]
    table = _md_table(["output", "", "max abs diff", "max rel diff", "tolerance", "label agreement", "worst row"], rows)
    if plot:
        figure = f"![Per-row differences between the exported and the source model]({PLOT_FILE})"
    elif f.row_diffs:
        figure = f"_The plot of per-row differences needs matplotlib: {PLOT_EXTRA}._"
    else:
        figure = ""
    return "\n\n".join(p for p in (head, table, figure) if p)


def _md_samples(f: Facts) -> str:
    if not f.sample_rows:
        return "_No samples stored._"
    note = "The first stored sample rows, and the outputs recorded for them when the package was written (→)."
    return note + "\n\n" + _md_table([md(h) for h in f.sample_header], [[md(c) for c in r] for r in f.sample_rows])


# -- HTML ---------------------------------------------------------------------------------
def _h_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _para(value: str, cls: str = "") -> str:
    return f'<p class="{cls}">{escape(value)}</p>' if cls else f"<p>{escape(value)}</p>"


def html_page(f: Facts, *, png: bytes | None) -> str:
    """One self-contained page: inline style, the plot as a data: URI, no script, nothing fetched."""
    m = f.manifest
    body = [f"<h1>{escape(m.name)} <small>{escape(m.version)}</small></h1>",
            _para(m.description or "No description was given.", "" if m.description else "note"),
            _para(f"A {m.task} model in {m.model.format.upper()}, packaged by modelpack.")]
    body += ["<h2>Intended uses &amp; limitations</h2>"] + [
        f"<h3>{escape(t)}</h3>" + _para(f.sections[t]) for t in ("Intended uses", "Limitations") if t in f.sections]
    if not any(t in f.sections for t in ("Intended uses", "Limitations")):
        body.append(_para("The package's metadata says nothing about intended uses.", "note"))
    body += ["<h2>Inputs</h2>", _h_table(["column", "dtype", "kind", "categories"],
                                          [[c["name"], c["dtype"], c["kind"], c["categories"]] for c in f.columns])]
    body += ["<h2>Outputs</h2>", _h_table(["name", "dtype", "shape", "role"],
                                           [[o.name, o.dtype, shape_text(o.shape), o.role or ""] for o in m.outputs])]
    if m.classes:
        body.append(_para("Classes, in predict_proba column order: " + ", ".join(str(c) for c in m.classes[:50])))
    body += ["<h2>Fidelity certificate</h2>", _h_fidelity(f, png)]
    body += ["<h2>Evaluation results</h2>", _h_table(["metric", "value"], f.metrics.items())
             if f.metrics else _para("No metrics in the package's metadata.", "note")]
    body += ["<h2>Placement forecast</h2>", f"<pre>{escape(f.placement)}</pre>",
             "<h2>Provenance</h2>", _h_table(["", "value"], f.provenance), "<h2>Signature</h2>", _para(f.signature)]
    body += ["<h2>Sample predictions</h2>", _h_table(f.sample_header, f.sample_rows) if f.sample_rows
             else _para("No samples stored.", "note")]
    body += [f"<h2>{escape(t)}</h2>" + _para(f.sections[t])
             for t in ("Training data", "Evaluation data", "Model card authors", "Contact", "Citation") if t in f.sections]
    if f.other_metadata:
        body += ["<h2>Other metadata</h2>", _h_table(["key", "value"], f.other_metadata.items())]
    body += [_para(n, "note") for n in f.notes]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(m.name)} {escape(m.version)}: model card</title><style>{_STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def _h_fidelity(f: Facts, png: bytes | None) -> str:
    fid = f.manifest.fidelity
    if fid is None:
        return _para("No certificate: the package was packed from a file, not exported from a framework model.",
                     "note")
    verdict = '<span class="ok">Passed</span>' if fid.passed else '<span class="fail">FAILED</span>'
    rows = [[o.output, "ok" if o.passed else "FAIL", f"{o.max_abs_diff:.3g}", f"{o.max_rel_diff:.3g}",
             "" if o.tolerance is None else f"{o.tolerance:.3g}",
             "" if o.label_agreement is None else f"{o.label_agreement:.2%}", str(o.worst_row)] for o in fid.outputs]
    dtype = f", exported as {escape(fid.dtype)}" if fid.dtype else ""
    out = (f"<p>{verdict} on {fid.rows} sample rows{dtype}: the exported model against the source model, "
           "output by output.</p>"
           + _h_table(["output", "", "max abs diff", "max rel diff", "tolerance", "label agreement", "worst row"], rows))
    if png is not None:
        out += (f'<img alt="Per-row differences between the exported and the source model" '
                f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    elif f.row_diffs:
        out += _para(f"The plot of per-row differences needs matplotlib: {PLOT_EXTRA}.", "note")
    return out
