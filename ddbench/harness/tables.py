"""Grid tables (rows x columns of text cells) written as CSV, Markdown, LaTeX and a rich table.

A :class:`GridTable` is what every harness command prints and writes: the same header and
cells in every format. With ``group_first`` the first column names a group (the verifier of
Table 2, the sweep of an ablation): CSV repeats it on every row (one row, one record), while
Markdown, LaTeX and the screen show it once per group, as the paper does, and LaTeX separates
groups with ``\\midrule``. ``emphasis`` marks cells (the best of a group) bold in Markdown and
LaTeX; CSV stays plain text.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from ddbench.reporting.exports import latex_escape
from ddbench.store.io import atomic_write_text


@dataclass
class GridTable:
    caption: str
    header: list[str]
    rows: list[list[str]]
    group_first: bool = False
    emphasis: set[tuple[int, int]] = field(default_factory=set)  # (row, column) of bold cells
    align: str = ""  # LaTeX column alignment; default: l for text columns, r for the rest
    notes: list[str] = field(default_factory=list)  # lines under the table

    def _display_rows(self) -> list[list[str]]:
        """Rows with a group's name blanked after its first row (for the human formats)."""
        shown, previous = [], None
        for row in self.rows:
            row = list(row)
            if self.group_first:
                if row[0] == previous:
                    row[0] = ""
                else:
                    previous = row[0]
            shown.append(row)
        return shown

    def group_starts(self) -> list[int]:
        if not self.group_first:
            return []
        return [i for i, row in enumerate(self.rows) if i > 0 and row[0] != self.rows[i - 1][0]]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return buffer.getvalue()

    def to_markdown(self) -> str:
        def cell(text: str, r: int, c: int) -> str:
            text = text.replace("|", "\\|")
            return f"**{text}**" if (r, c) in self.emphasis and text else text

        lines = [f"**{self.caption}**", "", "| " + " | ".join(h.replace("|", "\\|") for h in self.header) + " |",
                 "| " + " | ".join("---" for _ in self.header) + " |"]
        for r, row in enumerate(self._display_rows()):
            lines.append("| " + " | ".join(cell(text, r, c) for c, text in enumerate(row)) + " |")
        if self.notes:
            lines += [""] + [f"{note}  " for note in self.notes]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        align = self.align or ("l" * (2 if self.group_first else 1)).ljust(len(self.header), "r")
        starts = set(self.group_starts())
        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(self.caption)}}}",
                 rf"\begin{{tabular}}{{{align}}}", r"\toprule",
                 " & ".join(latex_escape(h) for h in self.header) + r" \\", r"\midrule"]
        for r, row in enumerate(self._display_rows()):
            if r in starts:
                lines.append(r"\midrule")
            cells = []
            for c, text in enumerate(row):
                text = latex_escape(text)
                cells.append(rf"\textbf{{{text}}}" if (r, c) in self.emphasis and text else text)
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [rf"\par\smallskip{{\footnotesize {latex_escape(note)}}}" for note in self.notes]
        lines += [r"\end{table}"]
        return "\n".join(lines) + "\n"

    def to_rich(self):
        from rich.table import Table

        table = Table(title=self.caption, caption="\n".join(self.notes) or None)
        for c, name in enumerate(self.header):
            table.add_column(name, justify="left" if c < (2 if self.group_first else 1) else "right")
        starts = set(self.group_starts())
        for r, row in enumerate(self._display_rows()):
            cells = [f"[bold]{text}[/bold]" if (r, c) in self.emphasis and text else text for c, text in enumerate(row)]
            table.add_row(*cells, end_section=(r + 1) in starts)
        return table

    def write(self, folder: Path, stem: str) -> list[Path]:
        """``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex`` in ``folder``."""
        paths = []
        for suffix, text in ((".csv", self.to_csv()), (".md", self.to_markdown()), (".tex", self.to_latex())):
            path = Path(folder) / f"{stem}{suffix}"
            atomic_write_text(path, text)
            paths.append(path)
        return paths


def best_in_groups(values: dict[tuple[int, int], float], groups: list[list[tuple[int, int]]]) -> set[tuple[int, int]]:
    """The cells holding the highest value of each group (ties: all of them)."""
    best = set()
    for group in groups:
        present = [cell for cell in group if cell in values]
        if len(present) < 2:
            continue
        top = max(values[cell] for cell in present)
        best |= {cell for cell in present if values[cell] == top}
    return best
