"""HTML summaries for notebooks (``_repr_html_`` of Manifest and Model)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .manifest import Manifest, TensorSpec


def _rows(specs: Sequence[TensorSpec]) -> str:
    cells = []
    for s in specs:
        shape = "?" if s.shape is None else "[" + ", ".join("?" if d is None else str(d) for d in s.shape) + "]"
        extra = s.role or ""
        if s.columns:
            extra += f" {len(s.columns)} columns"
        cells.append(f"<tr><td><code>{escape(s.name)}</code></td><td>{escape(s.kind)} {escape(s.dtype)}"
                     f"</td><td>{escape(shape)}</td><td>{escape(extra.strip())}</td></tr>")
    return "".join(cells)


def manifest_html(m: Manifest, providers: Sequence[str] | None = None) -> str:
    """A compact table: identity, task, IO, fidelity, runtime."""
    fid = ""
    if m.fidelity is not None:
        worst = max((o.max_abs_diff for o in m.fidelity.outputs), default=0.0)
        fid = (f"<tr><th>fidelity</th><td colspan=3>{'passed' if m.fidelity.passed else 'FAILED'} on "
               f"{m.fidelity.rows} rows, max abs diff {worst:.3g}</td></tr>")
    classes = ""
    if m.classes:
        shown = ", ".join(escape(str(c)) for c in m.classes[:20]) + (" …" if len(m.classes) > 20 else "")
        classes = f"<tr><th>classes</th><td colspan=3>{shown}</td></tr>"
    runs = f"<tr><th>runs on</th><td colspan=3>{escape(', '.join(providers))}</td></tr>" if providers else ""
    source = " ".join(filter(None, [m.source.framework, m.source.framework_version, m.source.model_class]))
    return (f"<div><strong>modelpack</strong> <code>{escape(m.name)}</code> {escape(m.version)} "
            f"<em>{escape(m.task)}</em> ({escape(m.model.format)})<table>"
            f"<tr><th>description</th><td colspan=3>{escape(m.description)}</td></tr>"
            f"<tr><th>source</th><td colspan=3>{escape(source or 'unknown')}</td></tr>{classes}{fid}{runs}"
            f"<tr><th colspan=4>inputs</th></tr>{_rows(m.inputs)}"
            f"<tr><th colspan=4>outputs</th></tr>{_rows(m.outputs)}</table></div>")
