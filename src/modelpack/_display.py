"""Short reprs and HTML summaries for notebooks.

Everything shown comes from a manifest, which is package data and so
attacker-controlled: every string goes through :func:`html.escape`, and the
HTML holds no script, style sheet or link to anything outside itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from .manifest import TensorSpec

if TYPE_CHECKING:
    from .manifest import Fidelity, Manifest

__all__ = ["FAIL", "OK", "TensorSpecs", "fidelity_html", "manifest_html", "shape_text", "spec_text",
           "specs_html", "table"]

_SHOWN_COLUMNS = 12  # column names listed in a summary before "… and N more"
_SHOWN_CATEGORIES = 5
OK = '<span style="color:#1a7f37">ok</span>'
FAIL = '<strong style="color:#cf222e">FAIL</strong>'


def shape_text(shape: Sequence[Any] | None) -> str:
    """``[N, 4]``; ``?`` for an unknown rank or an unnamed dynamic dimension."""
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def spec_text(s: TensorSpec) -> str:
    """One line: ``X: float32[N, 4], 4 columns`` (``sequence``/``map`` kinds named)."""
    kind = "" if s.kind == "tensor" else f"{s.kind} of "
    parts = [f"{s.name}: {kind}{s.dtype}{shape_text(s.shape)}"]
    if s.role:
        parts.append(f"role={s.role}")
    if s.for_class is not None:
        parts.append(f"class={s.for_class!r}")
    if s.columns:
        parts.append(f"{len(s.columns)} columns")
    return ", ".join(parts)


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """An HTML table of cells that are HTML already (callers escape)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table><thead><tr style="text-align:left">{head}</tr></thead><tbody>{body}</tbody></table>'


def _columns(s: TensorSpec) -> str:
    """Column names, each with its first categories; a one-column input named as its column shows only those."""
    if not s.columns:
        return ""
    cells = []
    for c in s.columns[:_SHOWN_COLUMNS]:
        cats = ""
        if c.categories:
            shown = ", ".join(escape(str(v)) for v in c.categories[:_SHOWN_CATEGORIES])
            cats = f" ({shown}{', …' if len(c.categories) > _SHOWN_CATEGORIES else ''})"
        name = "" if len(s.columns) == 1 and c.name == s.name else f"<code>{escape(c.name)}</code>"
        cells.append((name + cats).strip())
    more = len(s.columns) - _SHOWN_COLUMNS
    return ", ".join(filter(None, cells)) + (f" … and {more} more" if more > 0 else "")


def specs_html(specs: Sequence[TensorSpec]) -> str:
    """Inputs or outputs as a table: name, type, shape, role, columns (only the columns used)."""
    show_role = any(s.role or s.for_class is not None for s in specs)
    show_columns = any(_columns(s) for s in specs)
    header = (["name", "type", "shape"] + (["role"] if show_role else [])
              + (["columns (categories)"] if show_columns else []))
    rows = []
    for s in specs:
        row = [f"<code>{escape(s.name)}</code>",
               escape(s.dtype if s.kind == "tensor" else f"{s.kind} of {s.dtype}"), escape(shape_text(s.shape))]
        if show_role:
            role = s.role or ""
            row.append(escape(role + (f" ({s.for_class!r})" if s.for_class is not None else "")))
        if show_columns:
            row.append(_columns(s))
        rows.append(row)
    return table(header, rows)


class TensorSpecs(tuple[TensorSpec, ...]):
    """A model's inputs or outputs: a tuple of :class:`~modelpack.TensorSpec` that prints briefly."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "(" + "; ".join(spec_text(s) for s in self) + ")"

    def _repr_html_(self) -> str:
        return specs_html(self)


def fidelity_html(f: Fidelity) -> str:
    """The certificate: one row per output, the verdict first."""
    verdict = OK if f.passed else FAIL
    dtype = f", exported as {escape(f.dtype)}" if f.dtype else ""
    rows = [[f"<code>{escape(o.output)}</code>", OK if o.passed else FAIL, f"{o.max_abs_diff:.3g}",
             f"{o.max_rel_diff:.3g}", "" if o.tolerance is None else f"{o.tolerance:.3g}",
             "" if o.label_agreement is None else f"{o.label_agreement:.2%}", str(o.worst_row)]
            for o in f.outputs]
    return (f"<div><strong>fidelity certificate</strong>: {verdict} on {f.rows} rows{dtype}"
            + table(["output", "", "max abs diff", "max rel diff", "tolerance", "label agreement", "worst row"],
                     rows) + "</div>")


def _row(title: str, value: str) -> str:
    return f"<tr><th>{title}</th><td>{value}</td></tr>" if value else ""


def manifest_html(m: Manifest, providers: Sequence[str] | None = None) -> str:
    """A compact summary: identity, task, source, classes, fidelity, where it runs, then the IO tables.

    Rows with nothing to say are left out.
    """
    fid = ""
    if m.fidelity is not None:
        worst = max((o.max_abs_diff for o in m.fidelity.outputs), default=0.0)
        fid = f"{OK if m.fidelity.passed else FAIL} on {m.fidelity.rows} rows, max abs diff {worst:.3g}"
    classes = ""
    if m.classes:
        classes = ", ".join(escape(str(c)) for c in m.classes[:20]) + (" …" if len(m.classes) > 20 else "")
    source = " ".join(filter(None, [m.source.framework, m.source.framework_version, m.source.model_class]))
    head = (f"<strong>modelpack</strong> <code>{escape(m.name)}</code> {escape(m.version)} "
            f"<em>{escape(m.task)}</em> ({escape(m.model.format)})")
    rows = (_row("description", escape(m.description)) + _row("source", escape(source))
            + _row("classes", classes) + _row("fidelity", fid)
            + _row("runs on", escape(", ".join(providers)) if providers else ""))
    return (f"<div>{head}" + (f"<table>{rows}</table>" if rows else "")
            + f"<p>inputs</p>{specs_html(m.inputs)}<p>outputs</p>{specs_html(m.outputs)}</div>")
