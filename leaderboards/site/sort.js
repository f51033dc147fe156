// Sortable boards: click a column's header (or focus it and press Enter) to sort the rows by it; again to reverse.
// A cell with data-sort sorts by that number (a metric's mean, a size); other cells by their text. Empty cells go
// last either way. The first click puts numbers largest first and text A to Z.
"use strict";

function sortKey(cell) {
  if (cell.dataset.sort !== undefined) {
    return cell.dataset.sort === "" ? null : Number(cell.dataset.sort);
  }
  const text = cell.textContent.trim();
  return text === "" ? null : text;
}

function compareKeys(a, b) {
  if (a === null || b === null) {
    return (a === null) - (b === null);
  }
  if (typeof a === "number" && typeof b === "number") {
    return a - b;
  }
  return String(a).localeCompare(String(b));
}

function sortBy(table, header, column) {
  const numeric = header.dataset.type === "number";
  const current = header.getAttribute("aria-sort");
  const descending = current === null || current === "none" ? numeric : current === "ascending";
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((x, y) => {
    const a = sortKey(x.cells[column]);
    const b = sortKey(y.cells[column]);
    if (a === null || b === null) {
      return compareKeys(a, b);
    }
    return descending ? compareKeys(b, a) : compareKeys(a, b);
  });
  rows.forEach((row) => body.appendChild(row));
  table.querySelectorAll("thead th").forEach((th) => th.setAttribute("aria-sort", "none"));
  header.setAttribute("aria-sort", descending ? "descending" : "ascending");
}

document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("thead th").forEach((header, column) => {
    header.tabIndex = 0;
    header.setAttribute("aria-sort", "none");
    header.addEventListener("click", () => sortBy(table, header, column));
    header.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        sortBy(table, header, column);
      }
    });
  });
});
