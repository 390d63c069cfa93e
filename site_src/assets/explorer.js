/* PEFT Atlas explorer: facets, text search, sorting and URL state over the table rendered at build time.
 *
 * The table is complete without JavaScript. Here each row's facet values (as option indexes) and its
 * lower-cased search text are read once from the JSON blob. A change makes one pass over the rows that
 * decides which match and counts every facet option; then only rows whose visibility changed are touched.
 * At most a page's worth of matching rows (#explorer-more's data-limit) is shown, in table order, until the
 * reader asks for all of them, so that a change never makes the browser lay out thousands of rows.
 */
(function () {
  "use strict";

  const FACETS = ["category", "subcategory", "fm", "venue"]; // checkbox lists: any checked value matches
  const FLAGS = ["code", "refimpl"]; // single checkboxes: the row must have it
  const SORTS = ["title", "authors", "year", "venue", "category", "method"];
  const collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

  function emptyState() {
    const sets = {};
    for (const facet of FACETS) sets[facet] = new Set();
    return { sets, from: null, to: null, code: false, refimpl: false, q: "", sort: "" };
  }

  function yearOrNull(text) {
    return text && /^\d{4}$/.test(text) ? Number(text) : null;
  }

  function anyChosen(values, chosen) {
    for (let j = 0; j < values.length; j++) if (chosen[values[j]]) return true;
    return false;
  }

  function stateFromUrl(search) {
    const params = new URLSearchParams(search);
    const state = emptyState();
    for (const facet of FACETS) for (const value of params.getAll(facet)) state.sets[facet].add(value);
    state.from = yearOrNull(params.get("from"));
    state.to = yearOrNull(params.get("to"));
    for (const flag of FLAGS) state[flag] = params.get(flag) === "1";
    state.q = params.get("q") || "";
    const sort = params.get("sort") || "";
    state.sort = SORTS.includes(sort.replace(/^-/, "")) ? sort : "";
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
    const more = document.getElementById("explorer-more");
    const bodies = Array.from(document.getElementById("explorer-table").tBodies);
    const rowsPerBody = bodies.length ? bodies[0].rows.length : 1; // explorer.html groups the rows
    const headers = Array.from(document.querySelectorAll("#explorer-table th[data-sort]"));

    // Every facet option gets an index; its checkbox, its count badge and a counter slot share it.
    const options = {};
    for (const facet of [...FACETS, "flags"]) {
      const fieldset = form.querySelector(`fieldset[data-facet="${facet}"]`);
      const boxes = Array.from(fieldset.querySelectorAll("input[type=checkbox]"));
      options[facet] = {
        index: new Map(boxes.map((box, i) => [box.value === "1" ? box.name : box.value, i])),
        badges: boxes.map((box) => box.parentElement.querySelector("[data-count-for]")),
        written: boxes.map(() => ""),
        counts: new Int32Array(boxes.length),
      };
    }
    const flagIndex = FLAGS.map((flag) => options.flags.index.get(flag));

    const elementByKey = new Map();
    for (const body of bodies) for (const tr of body.rows) elementByKey.set(tr.dataset.paperKey, tr);
    const indexesOf = (facet, values) => values.map((value) => options[facet].index.get(value));
    const rows = JSON.parse(document.getElementById("explorer-data").textContent).map((entry, position) => ({
      position,
      el: elementByKey.get(entry.key),
      shown: true,
      match: true,
      // Option indexes per facet, in FACETS order.
      facets: [
        indexesOf("category", [entry.category]),
        entry.subcategory ? indexesOf("subcategory", [entry.subcategory]) : [],
        indexesOf("fm", entry.fm),
        indexesOf("venue", [entry.venue]),
      ],
      year: entry.year,
      flags: FLAGS.map((flag) => entry[flag]),
      text: entry.text.toLowerCase(),
      sort: entry.sort,
    }));

    let ordered = rows; // rows in table order
    let appliedSort = "";
    let showAll = false;
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

    // One pass: row.match, and for every option the rows that would match if that option were chosen
    // (a row failing only one facet still counts towards that facet's options).
    function filter() {
      const terms = state.q.toLowerCase().split(/\s+/).filter(Boolean);
      const selected = FACETS.map((facet) => {
        if (!state.sets[facet].size) return null;
        const chosen = new Uint8Array(options[facet].counts.length);
        for (const value of state.sets[facet]) if (options[facet].index.has(value)) chosen[options[facet].index.get(value)] = 1;
        return chosen;
      });
      const counts = FACETS.map((facet) => options[facet].counts);
      for (const facet of [...FACETS, "flags"]) options[facet].counts.fill(0);
      const wantFlags = FLAGS.map((flag) => state[flag]);
      const FLAG_FAILED = FACETS.length; // `failed` codes: facet index, FLAG_FAILED + flag index, or -1
      let matches = 0;
      for (const row of rows) {
        let failures = 0;
        let failed = -1;
        for (let f = 0; f < FACETS.length && failures < 2; f++) {
          if (selected[f] !== null && !anyChosen(row.facets[f], selected[f])) {
            failures += 1;
            failed = f;
          }
        }
        if ((state.from !== null && !(row.year >= state.from)) || (state.to !== null && !(row.year <= state.to))) {
          failures += 1;
          failed = -1;
        }
        for (let k = 0; k < FLAGS.length; k++) {
          if (wantFlags[k] && !row.flags[k]) {
            failures += 1;
            failed = FLAG_FAILED + k;
          }
        }
        if (failures < 2 && terms.length && !terms.every((term) => row.text.includes(term))) {
          failures += 1;
          failed = -1;
        }
        row.match = failures === 0;
        if (row.match) matches += 1;
        if (failures > 1 || (failures === 1 && failed < 0)) continue;
        for (let f = 0; f < FACETS.length; f++) {
          if (row.match || failed === f) {
            const values = row.facets[f];
            for (let j = 0; j < values.length; j++) counts[f][values[j]] += 1;
          }
        }
        for (let k = 0; k < FLAGS.length; k++) {
          if (row.flags[k] && (row.match || failed === FLAG_FAILED + k)) options.flags.counts[flagIndex[k]] += 1;
        }
      }
      return matches;
    }

    function sortRows() {
      if (state.sort === appliedSort) return;
      appliedSort = state.sort;
      const descending = state.sort.startsWith("-");
      const column = state.sort.replace(/^-/, "");
      ordered = rows.slice();
      if (column) {
        const direction = descending ? -1 : 1;
        const compare =
          column === "year"
            ? (a, b) => (a.year === null) - (b.year === null) || direction * ((a.year || 0) - (b.year || 0))
            : (a, b) => direction * collator.compare(a.sort[column], b.sort[column]);
        ordered.sort((a, b) => compare(a, b) || a.position - b.position);
      }
      const fragments = bodies.map(() => document.createDocumentFragment());
      ordered.forEach((row, i) => fragments[Math.floor(i / rowsPerBody)].appendChild(row.el));
      bodies.forEach((body, k) => body.appendChild(fragments[k]));
      for (const th of headers) {
        if (th.dataset.sort === column) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        else th.removeAttribute("aria-sort");
      }
    }

    function render() {
      const matches = filter();
      sortRows();
      // All DOM writes after the pass: rows whose visibility changed, then counts whose text changed.
      const limit = showAll ? Infinity : Number(more.dataset.limit);
      let shown = 0;
      for (const row of ordered) {
        const show = row.match && shown < limit;
        if (show) shown += 1;
        if (show !== row.shown) {
          row.el.classList.toggle("atlas-row--hidden", !show); // a class: the hidden attribute invalidates siblings
          row.shown = show;
        }
      }
      for (const facet of [...FACETS, "flags"]) {
        const { counts, badges, written } = options[facet];
        for (let i = 0; i < counts.length; i++) {
          const text = String(counts[i]);
          if (written[i] !== text) {
            badges[i].textContent = text;
            badges[i].parentElement.classList.toggle("atlas-facet__option--empty", text === "0");
            written[i] = text;
          }
        }
      }
      resultCount.textContent = String(matches);
      more.hidden = shown === matches;
      more.querySelector("span").textContent = String(matches);
    }

    function update(historyMode) {
      render();
      // History writes cost Chromium tens of milliseconds: make them once the new rows are painted.
      const url = urlFromState(state);
      requestAnimationFrame(() =>
        setTimeout(() => {
          if (url === location.pathname + location.search + location.hash) return;
          if (historyMode === "push") history.pushState(null, "", url);
          else history.replaceState(null, "", url);
        }),
      );
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
    more.querySelector("button").addEventListener("click", () => {
      showAll = true;
      render();
    });
    for (const th of headers) {
      th.addEventListener("click", () => { // the header's button, or Material's sort arrow beside it
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
