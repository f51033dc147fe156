"""Open the leaderboard site (``zoo leaderboard`` writes leaderboards/site/) in headless Chromium, as a reader would.

Each page is loaded from the file system (no server: the site must work from a plain folder) and fails the check
on: a console error, a page that did not finish loading or rendered nothing, a board table that is missing or
empty, a plot that is missing or did not load. On every page with two or more rows, clicking the headline
metric's header must sort the rows by it, largest first, and a second click must reverse them, and one of the two
must change the order the page came with. With ``--screenshots DIR`` each page is saved there as a full-height PNG.

    python benchmarks/site_check.py [leaderboards/site] [--screenshots leaderboards/screenshots] [--pages index ...]

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (the dev extra); exits 1 with
one line per problem, 0 when every page passed.
"""

import argparse
import shutil
import sys
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
WIDTH = 1400


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) on PATH, or None."""
    binary = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


def open_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise RuntimeError("no chromium and chromedriver on PATH: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={WIDTH},1000", "--allow-file-access-from-files"):
        options.add_argument(argument)
    options.binary_location = paths[0]
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(paths[1]), options=options)


_STATE = """
const table = document.querySelector("table.board");
const images = Array.from(document.querySelectorAll("figure img"));
return {ready: document.readyState, height: document.body.scrollHeight, text: document.body.innerText.length,
        rows: table ? table.tBodies[0].rows.length : -1, tableHeight: table ? table.offsetHeight : 0,
        images: images.map((img) => [img.getAttribute("src"), img.complete && img.naturalWidth > 0])};
"""

_COLUMN = """
const table = document.querySelector("table.board");
const column = arguments[0];
return Array.from(table.tBodies[0].rows).map((row) => {
  const cell = row.cells[column];
  return [row.cells[0].textContent, cell.dataset.sort === undefined ? null : cell.dataset.sort];
});
"""


def check_sorting(driver, name: str) -> list[str]:
    """Click the headline's header twice (a task page's third column, its headline metric; the index's fourth,
    each task's best score): the rows must follow it down, then up."""
    from selenium.webdriver.common.by import By

    column = 3 if name == "index" else 2
    header = driver.find_elements(By.CSS_SELECTOR, "table.board thead th")[column]
    before = driver.execute_script(_COLUMN, column)
    if len(before) < 2:
        return []
    problems, orders = [], []
    for direction in ("descending", "ascending"):
        header.click()
        after = driver.execute_script(_COLUMN, column)
        numbers = [float(key) for _, key in after if key not in (None, "")]
        if sorted(numbers, reverse=direction == "descending") != numbers:
            problems.append(f"{name}: clicking '{header.text}' did not sort it {direction}")
        if header.get_attribute("aria-sort") != direction:
            problems.append(f"{name}: '{header.text}' does not say it is sorted {direction}")
        orders.append([label for label, _ in after])
    distinct = {key for _, key in before if key not in (None, "")}
    if len(distinct) > 1 and all(order == [label for label, _ in before] for order in orders):
        problems.append(f"{name}: sorting by '{header.text}' never changed the row order")
    return problems


def check_page(driver, site: Path, name: str, screenshots: Path | None) -> list[str]:
    driver.set_window_size(WIDTH, 1000)
    driver.get((site / f"{name}.html").resolve().as_uri())
    state = driver.execute_script(_STATE)
    problems = [f"{name}: console {entry['level']}: {entry['message']}" for entry in driver.get_log("browser")
                if entry["level"] == "SEVERE"]
    if state["ready"] != "complete" or state["text"] == 0 or state["height"] < 100:
        problems.append(f"{name}: the page did not render (state {state['ready']}, height {state['height']})")
    if state["rows"] < 1 or state["tableHeight"] == 0:
        problems.append(f"{name}: no board table, or an empty one")
    if name != "index" and not state["images"]:
        problems.append(f"{name}: no plot on the page")
    problems += [f"{name}: plot {src} did not load" for src, loaded in state["images"] if not loaded]
    if screenshots is not None:
        driver.set_window_size(WIDTH, state["height"] + 40)
        screenshots.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshots / f"{name}.png"))
    if state["rows"] >= 2:
        problems += check_sorting(driver, name)
    return problems


def check_site(site: Path, screenshots: Path | None = None, pages: list[str] | None = None) -> list[str]:
    """Every problem found on the site's pages (``pages``: stems such as index, kd_digits; default all)."""
    site = Path(site)
    names = pages or sorted(p.stem for p in site.glob("*.html"))
    if "index" not in names and pages is None:
        return [f"{site}: no index.html"]
    driver = open_browser()
    try:
        return [problem for name in names for problem in check_page(driver, site, name, screenshots)]
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("site", nargs="?", default="leaderboards/site")
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--pages", nargs="+", default=None, help="page stems, e.g. index kd_digits (default: all)")
    args = parser.parse_args()
    problems = check_site(Path(args.site), args.screenshots, args.pages)
    for problem in problems:
        print(problem)
    print(f"{'FAIL' if problems else 'ok'}: {len(problems)} problem(s) on {args.site}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
