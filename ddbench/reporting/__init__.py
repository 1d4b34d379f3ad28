"""What a person sees: the console UI (progress, tables), Markdown/LaTeX/CSV tables, plots, and report.html / compare pages."""
