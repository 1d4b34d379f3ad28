"""Tables and pictures a run leaves in its output folder: CSV, Markdown and LaTeX versions of
the results table, and a PNG grid of each method's distilled images."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from ddbench.store.io import atomic_write_bytes, atomic_write_text

COLUMNS = ("method", "accuracy_mean", "accuracy_std", "per_seed", "distill_seconds", "peak_memory_bytes", "labels",
           "label_storage_bytes", "hlr", "ior", "ddranking_score", "budget")


def result_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method, in run order; a failed method keeps its row with the error."""
    rows = []
    budget = budget_text(results)
    for name, entry in results["methods"].items():
        if "error" in entry:
            rows.append({"method": name, "labels": f"failed: {entry['error']}", "budget": budget})
            continue
        ranking = entry.get("ddranking", {})
        rows.append({
            "hlr": ranking.get("hlr", ""), "ior": ranking.get("ior", ""), "ddranking_score": ranking.get("score", ""),
            "budget": budget,
            "method": name,
            "accuracy_mean": entry["accuracy"]["mean"],
            "accuracy_std": entry["accuracy"]["std"],
            "per_seed": " ".join(f"{a:.2f}" for a in entry["accuracy"]["per_seed"]),
            "distill_seconds": entry["distill_seconds"],
            "peak_memory_bytes": entry["peak_memory_bytes"],
            "labels": entry["labels"].get("labels", entry["soft_labels"]),
            "label_storage_bytes": entry["labels"].get("label_storage_bytes", 0),
        })
    return rows


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column, "")
    if value is None:
        return "not recorded"
    if column == "accuracy_mean" and value != "":
        return f"{value:.2f} ± {row['accuracy_std']:.2f}"
    if column == "distill_seconds" and value != "":
        return f"{value:.2f} s"
    if column.endswith("_bytes") and value != "":
        return f"{value / 2**20:.2f} MiB"
    if column in ("hlr", "ior") and value != "":
        return f"{value:+.2f}"
    if column == "ddranking_score" and value != "":
        return f"{value:.3f}"
    return str(value)


DISPLAY = {"method": "method", "accuracy_mean": "accuracy % (mean ± std)", "distill_seconds": "distill time",
           "peak_memory_bytes": "peak memory", "labels": "labels", "label_storage_bytes": "label storage"}
RANKING_DISPLAY = {"hlr": "HLR (pts)", "ior": "IOR (pts)", "ddranking_score": "DD-Ranking score"}


def display_columns(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The table's columns: DD-Ranking's three when any row has them."""
    if any(row.get("ddranking_score", "") != "" for row in rows):
        return {**DISPLAY, **RANKING_DISPLAY}
    return DISPLAY


def to_markdown(rows: list[dict[str, Any]], caption: str) -> str:
    columns = display_columns(rows)
    header = "| " + " | ".join(columns.values()) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(_cell(row, column) for column in columns) + " |" for row in rows]
    return "\n".join([f"**{caption}**", "", header, rule, *body]) + "\n"


def latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                          ("{", r"\{"), ("}", r"\}"), ("$", r"\$")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$")


def to_latex(rows: list[dict[str, Any]], caption: str) -> str:
    columns = display_columns(rows)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
             r"\begin{tabular}{l" + "r" * (len(columns) - 1) + "}", r"\toprule",
             " & ".join(latex_escape(v) for v in columns.values()) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(_cell(row, column)) for column in columns) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def budget_text(results: dict[str, Any], observer: bool = True, evaluator: bool = True) -> str:
    """The complete evaluation budget in one line: every number in a table carries it.
    ``observer``/``evaluator``: leave those parts out where the table's columns or rows vary them."""
    budget = results["budget"]
    schedule = budget["scheduler"]
    if schedule == "multistep":
        schedule += f" (x{budget['gamma']} at {', '.join(f'{m:g}' for m in budget['milestones'])} of the epochs)"
    split = results["dataset"].get("evaluated_on", "test")
    distill_seeds = results.get("distill_seeds", [results.get("distill_seed", 0)])
    parts = [f"budget {budget['preset']} v{budget['version']}: {budget['epochs']} epochs, {budget['optimizer']} lr "
             f"{budget['lr']:g} wd {budget['weight_decay']:g}, {schedule}, batch {budget['batch_size']}, augmentation "
             f"{budget['augmentation']}, precision {budget.get('precision', 'fp32')}, channels-last "
             f"{budget.get('channels_last', 'off')}"]
    if evaluator:
        options = ", ".join(f"{k}={v}" for k, v in results["evaluator"]["options"].items())
        parts.append(f"evaluator {results['evaluator']['name']} ({options})")
    parts.append(f"eval seeds {', '.join(map(str, results['seeds']))}; distill seeds {', '.join(map(str, distill_seeds))}"
                 f"{' (mean ± std over every distill seed x eval seed pair)' if len(distill_seeds) > 1 else ''}")
    if observer:
        where = "test split" if split == "test" else "validation split"
        parts.append(f"observer {results['observer']['architecture']} ({results['observer']['test_accuracy']:.2f}% on the "
                     f"{where}); verifier {results['verifier']}")
    parts.append(f"accuracy on the {split}")
    return "; ".join(parts)


def caption_of(results: dict[str, Any]) -> str:
    return f"{results['dataset']['name']}, IPC {results['ipc']}; {budget_text(results)}"


def write_tables(folder: Path, results: dict[str, Any], stem: str = "results") -> list[Path]:
    """``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex`` of a run's results in ``folder``."""
    rows = result_rows(results)
    caption = caption_of(results)
    outputs = {f"{stem}.csv": to_csv(rows), f"{stem}.md": to_markdown(rows, caption), f"{stem}.tex": to_latex(rows, caption)}
    paths = []
    for name, text in outputs.items():
        atomic_write_text(folder / name, text)
        paths.append(folder / name)
    return paths


def step_rows(results: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Per-step accuracy (mean ± std over seeds) of every method that has it: the columns
    (``step 1 (2 classes)``...) and one row per method."""
    columns, rows = [], []
    for name, entry in results["methods"].items():
        steps = entry.get("per_step")
        if not steps:
            continue
        labels = [f"step {i + 1} ({n} classes)" for i, n in enumerate(steps["classes_seen"])]
        columns = columns or labels
        rows.append({"method": name, **{label: f"{m:.2f} ± {s:.2f}" for label, m, s in zip(labels, steps["mean"], steps["std"])}})
    return columns, rows


def write_step_outputs(folder: Path, results: dict[str, Any], stem: str = "results") -> list[Path]:
    """For per-step evaluators (continual): ``<stem>-steps.csv/.md`` and ``<stem>-steps.png``,
    accuracy after each step, one line per method (std error bars)."""
    columns, rows = step_rows(results)
    if not rows:
        return []
    from ddbench.reporting.plots import line_plot

    header = ["method", *columns]
    csv_text = to_csv(rows, tuple(header))
    md = "| " + " | ".join(header) + " |\n| " + " | ".join("---" for _ in header) + " |\n"
    md += "".join("| " + " | ".join(str(row.get(c, "")) for c in header) + " |\n" for row in rows)
    md = f"{caption_of(results)}\n\n{md}"
    atomic_write_text(folder / f"{stem}-steps.csv", csv_text)
    atomic_write_text(folder / f"{stem}-steps.md", md)
    series = {name: [(n, m, s) for n, m, s in zip(e["per_step"]["classes_seen"], e["per_step"]["mean"], e["per_step"]["std"])]
              for name, e in results["methods"].items() if e.get("per_step")}
    plot = line_plot(folder / f"{stem}-steps.png", series, xlabel="classes seen",
                     title=f"class-incremental accuracy · {caption_of(results)}")
    return [folder / f"{stem}-steps.csv", folder / f"{stem}-steps.md", plot]


def image_grid_png(images: torch.Tensor, labels: torch.Tensor, mean, std, max_per_class: int = 10) -> bytes:
    """A PNG with one row per class (up to ``max_per_class`` images each), pixels denormalised."""
    from PIL import Image
    from torchvision.utils import make_grid

    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    pixels = (images.float() * std_t + mean_t).clamp(0, 1)
    rows = []
    per_row = min(max_per_class, int(torch.bincount(labels).max()))
    for label in labels.unique(sorted=True).tolist():
        chosen = pixels[labels == label][:per_row]
        if len(chosen) < per_row:
            chosen = torch.cat([chosen, torch.ones(per_row - len(chosen), *chosen.shape[1:])])
        rows.append(chosen)
    grid = make_grid(torch.cat(rows), nrow=per_row, padding=1, pad_value=1.0)
    scale = max(1, 256 // max(images.shape[-1], 1) // 2)
    array = (grid * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def write_image_grid(path: Path, images: torch.Tensor, labels: torch.Tensor, normalization) -> Path:
    atomic_write_bytes(path, image_grid_png(images, labels, normalization.mean, normalization.std))
    return path
