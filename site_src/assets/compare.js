/* PEFT Atlas measured comparison: sort the table by any column and filter it by FM type and category.
 *
 * The table is complete without JavaScript. Header buttons sort (again: reverse) and keep aria-sort up to
 * date; numeric columns sort by their data-value, and rows without a value stay last in either direction.
 * A filter hides rows and the chart points of the same methods.
 */
(function () {
  "use strict";

  const collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

  function cellKey(row, index, kind) {
    const cell = row.cells[index];
    if (kind !== "number") return cell.textContent.trim();
    const value = cell.dataset.value;
    return value === "" || value === undefined ? null : Number(value);
  }

  function compare(a, b, kind, direction) {
    if (a === null || a === "") return b === null || b === "" ? 0 : 1; // missing values last
    if (b === null || b === "") return -1;
    const order = kind === "number" ? a - b : collator.compare(a, b);
    return direction * order;
  }

  function start() {
    const root = document.getElementById("compare");
    if (!root || root.dataset.ready) return;
    root.dataset.ready = "true";
    const table = document.getElementById("compare-table");
    const body = table.tBodies[0];
    const headers = Array.from(table.tHead.rows[0].cells);
    const rows = Array.from(body.rows);

    headers.forEach(function (header, index) {
      header.querySelector("button").addEventListener("click", function () {
        const direction = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        const kind = header.dataset.sort;
        const keyed = rows.map(function (row, position) {
          return { row: row, key: cellKey(row, index, kind), position: position };
        });
        keyed.sort(function (a, b) {
          return compare(a.key, b.key, kind, direction) || a.position - b.position;
        });
        for (const other of headers) other.removeAttribute("aria-sort");
        header.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
        body.append(...keyed.map(function (item) { return item.row; }));
      });
    });

    const form = document.getElementById("compare-filters");
    const count = document.getElementById("compare-count");
    const points = Array.from(root.querySelectorAll(".atlas-svg__point"));
    function filter() {
      const fm = form.elements.fm.value;
      const category = form.elements.category.value;
      const shown = new Set();
      for (const row of rows) {
        const visible =
          (!fm || row.dataset.fm.split(" ").includes(fm)) && (!category || row.dataset.category === category);
        row.hidden = !visible;
        if (visible) shown.add(row.dataset.method);
      }
      for (const point of points) point.style.display = shown.has(point.dataset.key) ? "" : "none";
      count.textContent = shown.size + " of " + rows.length + " methods shown";
    }
    form.addEventListener("change", filter);
    form.hidden = false;
    filter();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
