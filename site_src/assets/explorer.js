/* PEFT Atlas explorer: facets, text search, sorting and URL state over the table rendered at build time.
 *
 * The table is complete without JavaScript. Here every row's facet values and lower-cased search text are
 * read once from the JSON blob; a change then makes one pass over the rows that decides visibility and
 * counts every facet option, and touches only the rows and counts that changed.
 */
(function () {
  "use strict";

  const FACETS = ["category", "subcategory", "fm", "venue"]; // checkbox lists: any checked value matches
  const FLAGS = ["code", "refimpl"]; // single checkboxes: the row must have it
  const collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

  function emptyState() {
    const sets = {};
    for (const facet of FACETS) sets[facet] = new Set();
    return { sets, from: null, to: null, code: false, refimpl: false, q: "", sort: "" };
  }

  function yearOrNull(text) {
    return text && /^\d{4}$/.test(text) ? Number(text) : null;
  }

  function stateFromUrl(search) {
    const params = new URLSearchParams(search);
    const state = emptyState();
    for (const facet of FACETS) for (const value of params.getAll(facet)) state.sets[facet].add(value);
    state.from = yearOrNull(params.get("from"));
    state.to = yearOrNull(params.get("to"));
    for (const flag of FLAGS) state[flag] = params.get(flag) === "1";
    state.q = params.get("q") || "";
    state.sort = /^-?(title|authors|year|venue|category|method)$/.test(params.get("sort") || "") ? params.get("sort") : "";
    return state;
  }

  function urlFromState(state) {
    const params = new URLSearchParams();
    if (state.q) params.set("q", state.q);
    for (const facet of FACETS) for (const value of state.sets[facet]) params.append(facet, value);
    if (state.from !== null) params.set("from", String(state.from));
    if (state.to !== null) params.set("to", String(state.to));
    for (const flag of FLAGS) if (state[flag]) params.set(flag, "1");
    if (state.sort) params.set("sort", state.sort);
    const query = params.toString();
    return location.pathname + (query ? "?" + query : "") + location.hash;
  }

  function start() {
    const root = document.getElementById("explorer");
    if (!root || root.dataset.ready) return;
    root.dataset.ready = "true";

    const form = document.getElementById("explorer-facets");
    const search = document.getElementById("explorer-q");
    const resultCount = document.getElementById("result-count");
    const tbody = document.querySelector("#explorer-table tbody");
    const headers = Array.from(document.querySelectorAll("#explorer-table th[data-sort]"));

    const elementByKey = new Map();
    for (const tr of tbody.rows) elementByKey.set(tr.dataset.paperKey, tr);
    const rows = JSON.parse(document.getElementById("explorer-data").textContent).map((entry, index) => ({
      index,
      el: elementByKey.get(entry.key),
      shown: true,
      values: {
        category: [entry.category],
        subcategory: entry.subcategory ? [entry.subcategory] : [],
        fm: entry.fm,
        venue: [entry.venue],
      },
      year: entry.year,
      code: entry.code,
      refimpl: entry.refimpl,
      text: entry.text.toLowerCase(),
      sort: entry.sort,
    }));

    // Count badges by facet and value; `written` remembers their text so unchanged ones are not touched.
    const countElements = {};
    for (const fieldset of form.querySelectorAll("fieldset[data-facet]")) {
      const facet = fieldset.dataset.facet;
      for (const span of fieldset.querySelectorAll("[data-count-for]")) {
        (countElements[facet] = countElements[facet] || new Map()).set(span.dataset.countFor, span);
      }
    }
    const written = new Map();

    let appliedSort = "";
    let state = stateFromUrl(location.search);

    function readControls() {
      const next = emptyState();
      for (const facet of FACETS) {
        for (const box of form.querySelectorAll(`input[name="${facet}"]:checked`)) next.sets[facet].add(box.value);
      }
      next.from = yearOrNull(form.elements.from.value);
      next.to = yearOrNull(form.elements.to.value);
      for (const flag of FLAGS) next[flag] = form.elements[flag].checked;
      next.q = search.value.trim();
      next.sort = state.sort;
      return next;
    }

    function writeControls() {
      for (const facet of FACETS) {
        for (const box of form.querySelectorAll(`input[name="${facet}"]`)) box.checked = state.sets[facet].has(box.value);
      }
      form.elements.from.value = state.from === null ? "" : String(state.from);
      form.elements.to.value = state.to === null ? "" : String(state.to);
      for (const flag of FLAGS) form.elements[flag].checked = state[flag];
      search.value = state.q;
    }

    function filter() {
      const terms = state.q.toLowerCase().split(/\s+/).filter(Boolean);
      const active = FACETS.filter((facet) => state.sets[facet].size);
      const counts = {};
      for (const facet of [...FACETS, "flags"]) counts[facet] = new Map();
      const bump = (facet, value) => counts[facet].set(value, (counts[facet].get(value) || 0) + 1);
      const countFacet = (row, facet) => {
        if (facet === "code" || facet === "refimpl") {
          if (row[facet]) bump("flags", facet);
        } else if (FACETS.includes(facet)) {
          for (const value of row.values[facet]) bump(facet, value);
        }
      };
      let matches = 0;
      for (const row of rows) {
        // A row that fails exactly one facet still counts towards that facet's options.
        let failures = 0;
        let failed = "";
        for (const facet of active) {
          if (!row.values[facet].some((value) => state.sets[facet].has(value))) {
            failures += 1;
            failed = facet;
          }
        }
        if ((state.from !== null && !(row.year >= state.from)) || (state.to !== null && !(row.year <= state.to))) {
          failures += 1;
          failed = "year";
        }
        for (const flag of FLAGS) {
          if (state[flag] && !row[flag]) {
            failures += 1;
            failed = flag;
          }
        }
        if (failures < 2 && terms.length && !terms.every((term) => row.text.includes(term))) {
          failures += 1;
          failed = "q";
        }
        row.match = failures === 0;
        if (row.match) {
          matches += 1;
          for (const facet of FACETS) countFacet(row, facet);
          for (const flag of FLAGS) countFacet(row, flag);
        } else if (failures === 1) {
          countFacet(row, failed);
        }
      }
      return { matches, counts };
    }

    function sortRows() {
      if (state.sort === appliedSort) return;
      appliedSort = state.sort;
      const descending = state.sort.startsWith("-");
      const column = state.sort.replace(/^-/, "");
      const order = rows.slice();
      if (column) {
        const direction = descending ? -1 : 1;
        const compare =
          column === "year"
            ? (a, b) => (a.year === null) - (b.year === null) || direction * ((a.year || 0) - (b.year || 0))
            : (a, b) => direction * collator.compare(a.sort[column], b.sort[column]);
        order.sort((a, b) => compare(a, b) || a.index - b.index);
      }
      const fragment = document.createDocumentFragment();
      for (const row of order) fragment.appendChild(row.el);
      tbody.appendChild(fragment);
      for (const th of headers) {
        if (th.dataset.sort === column) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        else th.removeAttribute("aria-sort");
      }
    }

    function render() {
      const { matches, counts } = filter();
      // All DOM writes after the pass: rows whose visibility changed, then counts whose text changed.
      for (const row of rows) {
        if (row.match !== row.shown) {
          row.el.hidden = !row.match;
          row.shown = row.match;
        }
      }
      for (const [facet, spans] of Object.entries(countElements)) {
        for (const [value, span] of spans) {
          const text = String(counts[facet].get(value) || 0);
          if (written.get(span) !== text) {
            span.textContent = text;
            written.set(span, text);
          }
        }
      }
      resultCount.textContent = String(matches);
      sortRows();
    }

    function update(historyMode) {
      const url = urlFromState(state);
      if (url !== location.pathname + location.search + location.hash) {
        if (historyMode === "push") history.pushState(null, "", url);
        else history.replaceState(null, "", url);
      }
      render();
    }

    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("change", (event) => {
      if (event.target === search) return;
      state = readControls();
      update("push");
    });
    search.addEventListener("input", () => {
      state = readControls();
      update("replace"); // one history entry per search, not per keystroke
    });
    document.getElementById("explorer-reset").addEventListener("click", () => {
      state = emptyState();
      writeControls();
      update("push");
    });
    for (const th of headers) {
      th.querySelector("button").addEventListener("click", () => {
        const column = th.dataset.sort;
        state.sort = state.sort === column ? "-" + column : column;
        update("push");
      });
    }
    window.addEventListener("popstate", () => {
      state = stateFromUrl(location.search);
      writeControls();
      render();
    });

    writeControls();
    render();
    form.hidden = false;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
