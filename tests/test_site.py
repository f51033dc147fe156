"""The leaderboard site (zoo.site): its pages, plots and Pareto front from records, byte-reproducible, nothing
fetched at view time, and the committed site checked in headless Chromium (benchmarks/site_check.py)."""

import importlib.util
import os
import re
from pathlib import Path

import pytest

from tests.test_leaderboard import fake_record
from zoo import leaderboard
from zoo.atomic import WRITTEN
from zoo.board_plots import params_at_work, pareto_front, plots_of
from zoo.errors import ConfigError
from zoo.paths import data_dir
from zoo.site import write_site

ROOT = Path(__file__).resolve().parent.parent
KD = {"name": "kd", "alpha": 0.9, "temperature": 4.0}


def load_site_check():
    spec = importlib.util.spec_from_file_location("site_check", ROOT / "benchmarks" / "site_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kd_digits_board():
    records = [fake_record("r1", {"name": "ce"}, 0.90), fake_record("r2", {"name": "ce"}, 0.92, seed=1),
               fake_record("r3", KD, 0.93), fake_record("r4", KD, 0.95, seed=1)]
    return leaderboard.board_of("kd_digits", records, code=None)


def test_the_pareto_front_keeps_only_what_nothing_cheaper_beats():
    points = [(1.0, 0.80), (2.0, 0.85), (2.0, 0.70), (3.0, 0.84), (0.5, 0.60), (4.0, 0.90), (4.0, 0.90)]
    assert pareto_front(points) == [4, 0, 1, 5]  # cheapest first; (3, .84) and (2, .70) are beaten; one tie kept
    assert pareto_front([]) == []


def test_a_task_page_has_the_sortable_board_its_cost_plot_and_every_rows_settings(tmp_path):
    board = kd_digits_board()
    written = write_site([board], tmp_path / "site")
    names = sorted(p.name for p in written)
    assert names == ["index.html", "kd_digits-cost.svg", "kd_digits.csv", "kd_digits.html", "sort.js", "style.css"]
    page = (tmp_path / "site" / "kd_digits.html").read_text()
    headers = re.findall(r'<th data-type="(\w+)">([^<]*)</th>', page)
    assert headers[:5] == [("text", "variant"), ("text", "source"), ("number", "test/acc"), ("number", "test/loss"),
                           ("number", "gain over ce")]
    rows = re.findall(r'<tr class="(\w+)"><td>([^<]*)</td>', page)
    assert rows == [("teacher", "teacher"), ("baseline", "ce"), ("measured", "kd")]
    assert '<td class="number" data-sort="0.94">0.9400 ± 0.0141</td>' in page  # the mean sorts, the cell reads
    assert '<img src="kd_digits-cost.svg"' in page and "kd (alpha=0.9, temperature=4.0); runs r3, r4" in page
    svg = (tmp_path / "site" / "kd_digits-cost.svg").read_text()
    assert "Pareto front" in svg and "<dc:date>" not in svg  # drawn, and stamped with nothing that changes
    index = (tmp_path / "site" / "index.html").read_text()
    assert '<a href="kd_digits.html">kd_digits</a>' in index
    assert "<td>kd</td>" in index and '<td class="number" data-sort="0.03">+0.0300</td>' in index


def test_the_site_is_the_same_bytes_twice_and_fetches_nothing(tmp_path):
    first = {p.name: p.read_bytes() for p in write_site([kd_digits_board()], tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in write_site([kd_digits_board()], tmp_path / "b")}
    assert first == second
    for name, data in first.items():
        if name.endswith((".html", ".css", ".js")):
            text = data.decode()
            links = re.findall(r'(?:src|href)="([^"]+)"', text) + re.findall(r"url\(([^)]+)\)", text)
            assert not [link for link in links if "//" in link], name  # every link is a file beside it
            assert "@import" not in text and "fetch(" not in text, name


def test_a_mixture_of_experts_is_placed_by_its_activated_parameters_on_the_cost_plot():
    """llava_mod_scene_vqa's upcycled student runs top-2 of 4 experts: the plot places it at the parameters it runs
    per token (its test/params_active), not at all its experts."""
    board = leaderboard.board_of("llava_mod_scene_vqa", leaderboard.load_records()["llava_mod_scene_vqa"], code=None)
    moe = next(row for row in board.rows if row.variant == "moe")
    assert params_at_work(moe) == moe.mean("test/params_active") / 1e6 < moe.params / 1e6
    cost = next(plot for plot in plots_of(board) if plot.name == "cost")
    assert cost.figure.axes[0].get_xlabel() == "parameters activated per token, millions"


def test_an_active_tasks_curves_reach_its_page_through_the_same_plots():
    """The plots a task page shows come from zoo.board_plots.PLOTS: the cost plot for every board, the learning
    curves for an active task's (RAD), from the committed records."""
    records = [r for r in leaderboard.load_records()["rad_fashion_mnist"]]
    board = leaderboard.board_of("rad_fashion_mnist", records, code=None)
    assert [plot.name for plot in plots_of(board)] == ["cost", "curves"]
    kd = plots_of(kd_digits_board())
    assert [plot.name for plot in kd] == ["cost"]


def test_a_folder_the_zoo_did_not_write_is_never_replaced(tmp_path):
    mine = tmp_path / "site"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not a leaderboard site the zoo wrote"):
        write_site([kd_digits_board()], mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    (mine / "notes.txt").unlink()
    (mine / WRITTEN).write_text("")
    assert write_site([kd_digits_board()], mine)  # one it wrote is replaced


# --- the committed site in a real browser ---------------------------------------------------------------------

needs_browser = pytest.mark.skipif(
    load_site_check().browser_paths() is None and not os.environ.get("ZOO_REQUIRE_BROWSER"),
    reason="needs apt-get install chromium chromium-driver (CI installs them and sets ZOO_REQUIRE_BROWSER=1)")


@needs_browser
def test_the_committed_site_renders_in_chromium_without_errors_and_sorts(tmp_path):
    """Every page of leaderboards/site (test_leaderboard checks it equals a regeneration): no console error,
    a board table, every plot loaded, sorting by the headline reorders the rows; a screenshot of each."""
    site_check = load_site_check()
    site = data_dir("leaderboards") / "site"
    assert site_check.check_site(site, screenshots=tmp_path) == []
    pages = sorted(p.stem for p in site.glob("*.html"))
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == pages and "index" in pages
    assert all(p.stat().st_size > 10_000 for p in tmp_path.glob("*.png"))


@needs_browser
def test_the_browser_check_fails_on_a_console_error_a_broken_plot_and_a_table_that_does_not_sort(tmp_path):
    site_check = load_site_check()
    site = tmp_path / "site"
    write_site([kd_digits_board()], site)
    page = site / "kd_digits.html"
    good = page.read_text()
    page.write_text(good.replace("</body>", "<script>console.error('boom')</script></body>"))
    assert any("console SEVERE" in p and "boom" in p for p in site_check.check_site(site, pages=["kd_digits"]))
    page.write_text(good.replace("kd_digits-cost.svg", "missing.svg"))
    assert "kd_digits: plot missing.svg did not load" in site_check.check_site(site, pages=["kd_digits"])
    page.write_text(good.replace('<script src="sort.js" defer></script>', ""))
    assert any("did not sort" in p for p in site_check.check_site(site, pages=["kd_digits"]))
