"""Model cards: a README.md in Hugging Face's layout and an HTML page, from a package's manifest.

The card says what the manifest says (description, intended uses from user
metadata, inputs, outputs and classes, the fidelity certificate, the placement
forecast, provenance, signature status) and shows the stored sample rows with
their recorded outputs. Nothing is re-run: a card is a view of the package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from ..manifest import Manifest
from .facts import gather
from .plots import fidelity_png
from .render import PLOT_FILE, html_page, markdown

__all__ = ["CARD_DIR", "ModelCard", "build_card", "signature_status"]

#: Where ``export(..., card=True)`` puts the card inside a package.
CARD_DIR = "extra/card"


@dataclass(frozen=True)
class ModelCard:
    """A model card: ``markdown`` (README.md), ``html`` (card.html) and the plot, if drawn.

    Example
    -------
    >>> import modelpack
    >>> card = modelpack.load("churn.mpk").card()   # doctest: +SKIP
    >>> card.save("churn-card")                      # doctest: +SKIP
    [PosixPath('churn-card/README.md'), PosixPath('churn-card/card.html'), PosixPath('churn-card/fidelity.png')]
    """

    name: str
    markdown: str
    html: str
    images: dict[str, bytes] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        """The card's files by name: ``README.md``, ``card.html`` and the plot's PNG when drawn."""
        return {"README.md": self.markdown.encode(), "card.html": self.html.encode(), **self.images}

    def save(self, dest: str | Path) -> list[Path]:
        """Write the files into the folder ``dest`` (created if needed), each one atomically."""
        from .._atomic import write_file

        folder = Path(dest)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, data in self.files().items():
            write_file(folder / name, data)
            written.append(folder / name)
        return written

    def __repr__(self) -> str:
        plots = f", {len(self.images)} plot(s)" if self.images else ", no plots"
        return f"<ModelCard {self.name}: README.md {len(self.markdown):,} chars, card.html{plots}>"

    def _repr_html_(self) -> str:
        # In its own frame, so the page's style sheet stays out of the notebook's.
        return (f'<iframe srcdoc="{escape(self.html, quote=True)}" sandbox="" '
                'style="width:100%;height:36rem;border:1px solid #d0d7de"></iframe>')


def build_card(manifest: Manifest, read: Callable[[str], bytes], *, package: str, signature: str,
               plots: bool = True) -> ModelCard:
    """The card of ``manifest``; ``read(name)`` returns a verified file of its package."""
    facts = gather(manifest, read, package=package, signature=signature)
    png = fidelity_png(facts.row_diffs, manifest.fidelity) if plots else None
    return ModelCard(name=manifest.name, markdown=markdown(facts, plot=png is not None),
                     html=html_page(facts, png=png), images={PLOT_FILE: png} if png is not None else {})


def signature_status(signature: bytes | None, package: str) -> str:
    """What the card says about a signature file: who it claims, and that a card cannot check it."""
    from .._package import short_ids, signers
    from ..errors import ModelpackError

    try:
        claimed = signers(signature, package)
    except ModelpackError as exc:
        return f"The signature file is malformed: {exc}"
    if not claimed:
        return "Not signed."
    return (f"Signed by key {short_ids(claimed)}. The card does not check signatures: "
            "`modelpack verify PACKAGE --trusted-key KEY.pub` does.")
