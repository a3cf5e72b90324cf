"""One compiled tree's nodes, listed as a TreeEnsemble node lists them."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TreeNodes"]


@dataclass
class TreeNodes:
    """One tree's nodes, as TreeEnsemble attributes are listed."""

    features: list[int] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    true_ids: list[int] = field(default_factory=list)
    false_ids: list[int] = field(default_factory=list)
    missing_true: list[int] = field(default_factory=list)
    leaves: dict[int, int] = field(default_factory=dict)  # node id -> outcome number

    def new(self) -> int:
        for column in (self.features, self.true_ids, self.false_ids, self.missing_true):
            column.append(0)
        self.modes.append("LEAF")
        self.thresholds.append(0.0)
        return len(self.modes) - 1

    def leaf(self, outcome: int) -> int:
        node = self.new()
        self.leaves[node] = outcome
        return node

    def branch(self, node: int, feature: int, mode: str, threshold: float, true_id: int, false_id: int,
               missing_true: bool) -> None:
        self.features[node], self.modes[node], self.thresholds[node] = feature, mode, threshold
        self.true_ids[node], self.false_ids[node] = true_id, false_id
        self.missing_true[node] = int(missing_true)
