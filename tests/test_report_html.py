"""report.html and ddbench compare, opened in a real headless browser (Chromium from Debian's
packages) where one is installed: the page opens, the table has one row per method, the
images load; and a screenshot is taken."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ddbench.cli import main

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    assert main(["run", "--method", "random", "--baseline", "squeeze", "--ipc", "2", "--observer-epochs", "1",
                 "--seeds", "2", "--option", "budget.epochs=1", "--quiet", "--out", str(root / "out"),
                 "--cache-dir", str(root / "cache")]) == 0
    return root / "out"


def test_the_report_is_one_self_contained_page(run_folder):
    page = (run_folder / "report.html").read_text()
    assert page.count('<tr class="method">') == 2
    assert page.count('src="data:image/png;base64,') == 2  # one grid per method, embedded
    assert "http://" not in page and "https://" not in page  # nothing fetched from anywhere
    assert "budget quick* v1: 1 epochs" in page and "ddbench run" in page and "[options.squeeze]" in page


def test_compare_gathers_runs_grouped_by_dataset_and_ipc(run_folder, tmp_path, capsys):
    assert main(["compare", str(run_folder), str(run_folder / "results.json"), "--html", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    assert "digits, IPC 2" in out and out.count("random") >= 2
    page = (tmp_path / "c.html").read_text()
    assert page.count("<tr><td>") == 4 and 'class="sortable"' in page


def _browser(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           "--virtual-time-budget=5000", *args], capture_output=True, text=True, timeout=120)


@needs_browser
def test_the_report_opens_in_chromium_with_its_rows_and_images(run_folder, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text((run_folder / "report.html").read_text().replace(
        "</body>", "<script>window.addEventListener('load', function () { var images = document.images; "
                   "var ok = images.length > 0 && Array.from(images).every(function (i) { return i.complete && "
                   "i.naturalWidth > 0; }); document.body.setAttribute('data-images', ok ? 'loaded' : 'broken'); "
                   "document.body.setAttribute('data-rows', document.querySelectorAll('table.results tbody tr').length); "
                   "});</script></body>"))
    dom = _browser("--dump-dom", probe.as_uri()).stdout
    assert 'data-images="loaded"' in dom, dom[-500:]
    assert re.search(r'data-rows="2"', dom)
    shot = tmp_path / "report.png"
    _browser(f"--screenshot={shot}", "--window-size=1280,1000", (run_folder / "report.html").as_uri())
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
