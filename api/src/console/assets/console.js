// The console's pages, rendered from /v1 answers. Everything is built with DOM calls and
// textContent (no markup from data); the token lives in sessionStorage and travels only in the
// Authorization header.
"use strict";

(function () {
  const TOKEN_KEY = "ledger-console-token";
  const HISTORY_PAGE = 1000;
  const HISTORY_MAX = 50000;
  const TABLE_PAGE = 100;
  const LIST_PAGE = 100;
  const SAMPLE_WINDOW_MS = 10 * 60 * 1000;
  const SAMPLE_INTERVAL_MS = 2000;

  const view = document.getElementById("view");
  const messages = document.getElementById("messages");
  const status = document.getElementById("status");
  const signIn = document.getElementById("sign-in");
  const tokenForm = document.getElementById("token-form");
  const tokenInput = document.getElementById("token");
  const session = document.getElementById("session");

  let token = sessionStorage.getItem(TOKEN_KEY);
  let renderId = 0;
  let poller = null;
  let moveFocus = false;
  // Projection name -> lag samples [{t, value}] of the last SAMPLE_WINDOW_MS, kept while the
  // tab lives (only sampled while the projections page is open).
  const lagSamples = new Map();

  function h(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function section(id, title, ...children) {
    return h("section", { id, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), ...children);
  }

  function time(iso) {
    if (!iso) return "—";
    const shown = iso.replace("T", " ").replace(/(\.\d{1,3})\d*Z$/, "$1").replace(/Z$/, "") + " UTC";
    return h("time", { datetime: iso }, shown);
  }

  function table(caption, columns, rows, attributes) {
    return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
      h("table", attributes || {},
        h("caption", {}, caption),
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows)));
  }

  function skuLink(sku) {
    return h("a", { href: `#/sku/${encodeURIComponent(sku)}` }, sku);
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  async function api(path) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, { headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" });
    } catch (_) {
      throw new ApiError(0, { title: "The API did not answer", detail: "the request failed before an answer arrived" });
    }
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      throw new ApiError(response.status, body && typeof body === "object" ? body : { title: `HTTP ${response.status}` });
    }
    return body;
  }

  function announce(text) {
    messages.textContent = "";
    if (text) messages.append(h("p", {}, text));
  }

  // A problem answer as a paragraph in the part of the page that needed it, also announced.
  // `need` says what the part needs, for a 403: e.g. "the audit role (auditor or admin)".
  function problemNotice(error, what, need) {
    if (!(error instanceof ApiError)) throw error;
    const problem = error.problem || {};
    const code = (problem.type || "").split(":").pop() || "error";
    let text;
    if (error.status === 403) {
      text = `Not allowed: ${what} needs ${need || "a role your token lacks"}. The API says: ${problem.detail || problem.title}.`;
    } else if (error.status === 0) {
      text = `${problem.title}: ${problem.detail}.`;
    } else {
      text = `Could not ${what} (${error.status} ${problem.title || ""}): ${problem.detail || "no detail given"}.`;
    }
    announce(text);
    return h("p", { class: `problem problem-${code}`, "data-problem": code, "data-status": error.status }, text);
  }

  function showSignIn(reason) {
    stopPolling();
    signIn.hidden = false;
    session.hidden = true;
    view.hidden = true;
    announce(reason || "");
    tokenInput.focus();
  }

  // Handles a failed request of a page part: a 401 asks for a token again, anything else is
  // shown where the part would be.
  function failed(error, container, what, need) {
    if (error instanceof ApiError && error.status === 401) {
      token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn(`The API did not accept the token: ${error.problem.detail || error.problem.title}. Enter a token to go on.`);
      return;
    }
    container.append(problemNotice(error, what, need));
  }

  function stopPolling() {
    if (poller !== null) clearInterval(poller);
    poller = null;
  }

  function heading(text) {
    const node = h("h1", { tabindex: "-1" }, text);
    view.append(node);
    if (moveFocus) node.focus();
    return node;
  }

  // Pages.

  async function findPage(id, query) {
    heading("Find a SKU");
    const prefix = query.get("prefix") || "";
    const input = h("input", { id: "prefix", name: "prefix", value: prefix, autocomplete: "off", spellcheck: "false", "aria-describedby": "prefix-help" });
    const form = h("form", { id: "find-form", class: "inline", role: "search", "aria-label": "SKU search" },
      h("label", { for: "prefix" }, "SKU starts with"), input, h("button", { type: "submit" }, "Search"),
      h("p", { id: "prefix-help", class: "help" }, "Case-sensitive; letters, digits, “-”, “_” and “.”. Leave empty to list every SKU."));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const target = `#/find?prefix=${encodeURIComponent(input.value.trim())}`;
      if (location.hash === target) route();
      else location.hash = target;
    });
    const results = section("results", "SKUs");
    view.append(form);
    if (!query.has("prefix")) return;
    view.append(results);
    const rows = h("tbody");
    const shown = h("p", { id: "results-count" });
    const more = h("button", { type: "button", hidden: true }, "More SKUs");
    results.append(shown, h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Matching SKUs" },
      h("table", { id: "sku-results" },
        h("caption", {}, prefix ? `SKUs starting with “${prefix}”` : "Every SKU"),
        h("thead", {}, h("tr", {}, ["SKU", "On hand", "Reserved", "Available", "Reorder point", "Version", "Last change"].map((c) => h("th", { scope: "col" }, c)))),
        rows)), more);
    let count = 0;
    let after = null;
    const load = async () => {
      const params = new URLSearchParams({ limit: String(LIST_PAGE) });
      if (prefix) params.set("prefix", prefix);
      if (after) params.set("after_sku", after);
      const page = await api(`/v1/skus?${params}`);
      if (id !== renderId) return;
      for (const level of page) {
        rows.append(h("tr", { "data-sku": level.sku },
          h("th", { scope: "row" }, skuLink(level.sku)),
          [level.on_hand, level.reserved, level.available, level.reorder_point, level.version].map((n) => h("td", {}, String(n))),
          h("td", {}, time(level.updated_at))));
      }
      count += page.length;
      after = page.length ? page[page.length - 1].sku : after;
      more.hidden = page.length < LIST_PAGE;
      shown.textContent = count === 0
        ? `No SKU starts with “${prefix}” (a SKU is listed once its first event has been projected).`
        : `${count} SKU${count === 1 ? "" : "s"} shown.`;
      status.textContent = shown.textContent;
    };
    more.addEventListener("click", () => load().catch((error) => failed(error, results, "list more SKUs")));
    try {
      await load();
    } catch (error) {
      failed(error, results, "search SKUs");
    }
  }

  async function loadHistory(sku, from, to) {
    const entries = [];
    let after = null;
    for (;;) {
      const params = new URLSearchParams({ limit: String(HISTORY_PAGE) });
      if (from) params.set("from", from);
      if (to) params.set("to", to);
      if (after !== null) params.set("after_version", String(after));
      const page = await api(`/v1/skus/${encodeURIComponent(sku)}/history?${params}`);
      entries.push(...page.entries);
      if (page.next_after_version === null || page.next_after_version === undefined) return { entries, complete: true };
      if (entries.length >= HISTORY_MAX) return { entries, complete: false };
      after = page.next_after_version;
    }
  }

  function describeChange(entry) {
    const parts = [];
    if (entry.on_hand_change) parts.push(`on hand ${entry.on_hand_change > 0 ? "+" : ""}${entry.on_hand_change}`);
    if (entry.reserved_change) parts.push(`reserved ${entry.reserved_change > 0 ? "+" : ""}${entry.reserved_change}`);
    return parts.length ? parts.join(", ") : "—";
  }

  function balancesList(state) {
    const item = (label, field, value) => h("div", {}, h("dt", {}, label), h("dd", { "data-field": field }, String(value)));
    return h("dl", { class: "balances" },
      item("On hand", "on_hand", state.on_hand),
      item("Reserved", "reserved", state.reserved),
      item("Available", "available", state.available),
      item("Reorder point", "reorder_point", state.reorder_point),
      item("Below reorder point", "below_reorder_point", state.below_reorder_point ? "yes" : "no"),
      item("Open reservations", "open_reservations", state.open_reservations),
      item("In transit", "in_transit", state.in_transit),
      item("Version", "version", state.version === null || state.version === undefined ? "none yet" : state.version),
      item("Discontinued", "discontinued", state.discontinued ? "yes" : "no"));
  }

  function movementRows(sku, entries) {
    return entries.map((entry) => h("tr", { "data-version": entry.version },
      h("th", { scope: "row" }, String(entry.version)),
      h("td", {}, time(entry.recorded_at)),
      h("td", {}, entry.movement || entry.event_type, entry.reservation_id ? ` (${entry.reservation_id})` : ""),
      h("td", {}, describeChange(entry)),
      h("td", {}, String(entry.on_hand_after)),
      h("td", {}, String(entry.reserved_after)),
      h("td", {}, String(entry.available_after)),
      h("td", {}, String(entry.reorder_point_after)),
      h("td", {}, entry.principal || "—"),
      h("td", { class: "mono" }, entry.correlation_id || "—"),
      h("td", {}, entry.reason || "—", entry.reference ? ` (reference ${entry.reference})` : ""),
      h("td", {}, h("a", { href: `#/sku/${encodeURIComponent(sku)}/at/${entry.version}`, "aria-label": `State of ${sku} right after version ${entry.version}` }, "As of here"))));
  }

  function movementTable(container, sku, entries) {
    // Newest first, a page at a time.
    const newestFirst = entries.slice().reverse();
    const body = h("tbody");
    const position = h("p", { id: "movements-position", "aria-live": "polite" });
    const newer = h("button", { type: "button" }, "Newer");
    const older = h("button", { type: "button" }, "Older");
    let start = 0;
    const show = () => {
      body.textContent = "";
      body.append(...movementRows(sku, newestFirst.slice(start, start + TABLE_PAGE)));
      const end = Math.min(start + TABLE_PAGE, newestFirst.length);
      position.textContent = newestFirst.length ? `Movements ${start + 1}–${end} of ${newestFirst.length}, newest first.` : "No movements in this range.";
      newer.disabled = start === 0;
      older.disabled = end >= newestFirst.length;
    };
    newer.addEventListener("click", () => { start = Math.max(0, start - TABLE_PAGE); show(); });
    older.addEventListener("click", () => { start += TABLE_PAGE; show(); });
    container.append(position,
      h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Movements" },
        h("table", { id: "movements" },
          h("caption", {}, `Movements of ${sku} with the balances after each`),
          h("thead", {}, h("tr", {}, ["Version", "Recorded", "Movement", "Change", "On hand", "Reserved", "Available", "Reorder point", "Actor", "Correlation id", "Reason", "State"].map((c) => h("th", { scope: "col" }, c)))),
          body)),
      h("div", { class: "pager" }, newer, older));
    show();
  }

  function zoomForm(sku, from, to) {
    const fromInput = h("input", { id: "zoom-from", name: "from", value: from, placeholder: "2026-01-31T09:00:00Z", autocomplete: "off", spellcheck: "false" });
    const toInput = h("input", { id: "zoom-to", name: "to", value: to, placeholder: "2026-01-31T18:00:00Z", autocomplete: "off", spellcheck: "false" });
    const error = h("p", { class: "problem", id: "zoom-error", hidden: true });
    const reset = h("button", { type: "button", id: "zoom-reset" }, "Whole history");
    const form = h("form", { id: "zoom-form", class: "inline", "aria-label": "Time range", "aria-describedby": "zoom-help" },
      h("label", { for: "zoom-from" }, "From"), fromInput,
      h("label", { for: "zoom-to" }, "To (exclusive)"), toInput,
      h("button", { type: "submit" }, "Zoom"), reset,
      h("p", { id: "zoom-help", class: "help" }, "RFC 3339 times (UTC). You can also drag across the chart."), error);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const a = fromInput.value.trim(), b = toInput.value.trim();
      const bad = [a, b].find((v) => v && Number.isNaN(Date.parse(v)));
      if (bad !== undefined) {
        error.hidden = false;
        error.textContent = `“${bad}” is not a time; write it like 2026-01-31T09:00:00Z.`;
        announce(error.textContent);
        return;
      }
      zoomTo(sku, a, b);
    });
    reset.addEventListener("click", () => zoomTo(sku, "", ""));
    return form;
  }

  function zoomTo(sku, from, to) {
    const params = new URLSearchParams();
    if (from) params.set("from", from);
    if (to) params.set("to", to);
    const query = params.toString();
    location.hash = `#/sku/${encodeURIComponent(sku)}${query ? `?${query}` : ""}`;
  }

  async function skuPage(id, sku, query) {
    const from = query.get("from") || "", to = query.get("to") || "";
    const enc = encodeURIComponent(sku);
    heading(`SKU ${sku}`);
    const balances = section("balances", "Balances now");
    const timeline = section("timeline", "Timeline");
    const movements = section("movement-list", "Movements");
    const reservations = section("open-reservations", "Open reservations");
    const alertList = section("alert-list", "Low-stock alerts");
    view.append(balances, timeline, movements, reservations, alertList);
    timeline.append(zoomForm(sku, from, to));
    view.setAttribute("aria-busy", "true");

    const stateRequest = api(`/v1/skus/${enc}`);
    const alertsRequest = api(`/v1/skus/${enc}/alerts?limit=1000`);
    const reservationsRequest = api(`/v1/skus/${enc}/reservations?status=open&limit=1000`);
    const historyRequest = loadHistory(sku, from, to);
    // Each part waits for its own answer; a refused history leaves the others standing.
    const parts = [
      stateRequest.then((state) => {
        if (id === renderId) balances.append(balancesList(state));
      }, (error) => id === renderId && failed(error, balances, "read this SKU's balances")),
      reservationsRequest.then((rows) => {
        if (id !== renderId) return;
        reservations.append(rows.length === 0 ? h("p", {}, "No open reservations (from the reservations read model).") :
          table(`Open reservations of ${sku}`, ["Reservation", "Order", "Quantity", "Created", "Expires", "Expires in"],
            rows.map((r) => h("tr", { "data-reservation": r.reservation_id },
              h("th", { scope: "row" }, r.reservation_id), h("td", {}, r.order_id || "—"), h("td", {}, String(r.quantity)),
              h("td", {}, time(r.created_at)), h("td", {}, time(r.expires_at)), h("td", {}, expiresIn(r.expires_at)))),
            { id: "reservations" }));
      }, (error) => id === renderId && failed(error, reservations, "list this SKU's reservations")),
      Promise.all([historyRequest, alertsRequest.catch(() => [])]).then(([history, alerts]) => {
        if (id !== renderId) return;
        drawTimeline(timeline, sku, history, alerts, from, to);
        movementTable(movements, sku, history.entries);
      }, (error) => {
        if (id !== renderId) return;
        failed(error, timeline, "reading this SKU's history", "the audit role (auditor or admin)");
        movements.append(h("p", {}, "The movements come from the history, which this token may not read."));
      }),
      alertsRequest.then((alerts) => {
        if (id !== renderId) return;
        alertList.append(alerts.length === 0 ? h("p", {}, "This SKU has had no low-stock alert.") :
          table(`Low-stock alerts of ${sku}, newest first`, ["Alert", "Status", "Opened at version", "Available / reorder point", "Closed at version", "Why closed"],
            alerts.map((a) => h("tr", {},
              h("th", { scope: "row" }, String(a.alert_id)), h("td", {}, a.status), h("td", {}, String(a.opened_version)),
              h("td", {}, `${a.available_at_open} / ${a.reorder_point_at_open}`),
              h("td", {}, a.closed_version === null ? "—" : String(a.closed_version)), h("td", {}, a.close_reason || "—")))));
      }, (error) => id === renderId && failed(error, alertList, "list this SKU's alerts")),
    ];
    await Promise.all(parts);
    if (id === renderId) view.setAttribute("aria-busy", "false");
  }

  function expiresIn(iso) {
    if (!iso) return "never";
    const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (seconds <= 0) return "due now";
    if (seconds < 120) return `${seconds} s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
    return `${Math.round(seconds / 3600)} h`;
  }

  function drawTimeline(container, sku, history, alerts, from, to) {
    const entries = history.entries;
    if (entries.length === 0) {
      container.append(h("p", { id: "timeline-summary" }, from || to ? "No movements in this time range." : "This SKU has no movements yet."));
      return;
    }
    const versions = new Set(entries.map((e) => e.version));
    const opened = alerts.filter((a) => versions.has(a.opened_version)).length;
    const first = entries[0], last = entries[entries.length - 1];
    const summary = `${entries.length} history entries from ${first.recorded_at} to ${last.recorded_at}` +
      ` (versions ${first.version}–${last.version}); ${opened} low-stock alert${opened === 1 ? "" : "s"} opened in this range.` +
      (history.complete ? "" : ` Only the first ${entries.length} are drawn: zoom to a shorter range to see the rest.`);
    const chart = window.LedgerChart.timeline(entries, alerts, {
      title: `On hand, reserved, available and reorder point of ${sku} over time`,
      description: `${summary} The movements table below lists the same figures.`,
      onZoom: (a, b) => zoomTo(sku, new Date(a).toISOString(), new Date(b).toISOString()),
    });
    const legend = h("ul", { class: "legend", "aria-label": "Legend" },
      [["on_hand_after", "On hand"], ["reserved_after", "Reserved"], ["available_after", "Available"], ["reorder_point_after", "Reorder point"], ["alert-opened", "Alert opened"], ["alert-closed", "Alert closed"]]
        .map(([key, label]) => h("li", {}, h("span", { class: `swatch swatch-${key}`, "aria-hidden": "true" }), label)));
    const [fromInput, toInput] = [document.getElementById("zoom-from"), document.getElementById("zoom-to")];
    if (fromInput && !fromInput.value) fromInput.placeholder = first.recorded_at;
    if (toInput && !toInput.value) toInput.placeholder = last.recorded_at;
    container.append(h("figure", { class: "chart" }, chart, h("figcaption", { id: "timeline-summary" }, summary)), legend);
    status.textContent = summary;
  }

  async function asOfPage(id, sku, versionText) {
    const version = Number(versionText);
    heading(`SKU ${sku} as of version ${versionText}`);
    const back = h("p", {}, h("a", { href: `#/sku/${encodeURIComponent(sku)}` }, `Back to ${sku} now`));
    const body = section("as-of", "State right after this version");
    view.append(back, body);
    if (!Number.isSafeInteger(version) || version < 0) {
      body.append(h("p", { class: "problem" }, "The version must be a whole number, 0 or more."));
      return;
    }
    const params = new URLSearchParams({ at_version: String(version), limit: "1" });
    if (version > 0) params.set("after_version", String(version - 1));
    let answer;
    try {
      answer = await api(`/v1/skus/${encodeURIComponent(sku)}/history?${params}`);
    } catch (error) {
      if (id === renderId) failed(error, body, "reading an as-of state", "the audit role (auditor or admin)");
      return;
    }
    if (id !== renderId) return;
    const entry = answer.entries.find((e) => e.version === version);
    if (entry) {
      body.append(h("p", { id: "as-of-movement" }, `The movement at this version: ${entry.movement || entry.event_type}, recorded `,
        time(entry.recorded_at), ` by ${entry.principal || "an unknown principal"} (correlation id ${entry.correlation_id || "none"}).`));
    }
    body.append(balancesList(answer.state));
    const locations = Object.entries(answer.state.locations || {});
    if (locations.length > 0) {
      body.append(table("Balances by location at this version", ["Location", "On hand", "Reserved", "Available", "Reorder point", "In transit"],
        locations.map(([name, l]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, String(l.on_hand)), h("td", {}, String(l.reserved)),
          h("td", {}, String(l.available)), h("td", {}, String(l.reorder_point)), h("td", {}, String(l.in_transit))))));
    }
    status.textContent = `State of ${sku} as of version ${version} shown.`;
  }

  async function lowStockPage(id) {
    heading("Low stock");
    const part = section("low-stock", "SKUs below their reorder point");
    view.append(h("p", {}, "From the stock levels read model, by SKU."), part);
    const body = h("tbody");
    const count = h("p", { id: "low-stock-count" });
    const more = h("button", { type: "button", hidden: true }, "More SKUs");
    part.append(count, h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Low stock" },
      h("table", { id: "low-stock-table" }, h("caption", {}, "SKUs whose available stock is below their reorder point"),
        h("thead", {}, h("tr", {}, ["SKU", "On hand", "Reserved", "Available", "Reorder point", "Short by", "Last movement"].map((c) => h("th", { scope: "col" }, c)))),
        body)), more);
    let shown = 0, after = null;
    const load = async () => {
      const params = new URLSearchParams({ limit: String(LIST_PAGE) });
      if (after) params.set("after_sku", after);
      const rows = await api(`/v1/low-stock?${params}`);
      if (id !== renderId) return;
      for (const r of rows) {
        body.append(h("tr", { "data-sku": r.sku }, h("th", { scope: "row" }, skuLink(r.sku)), h("td", {}, String(r.on_hand)),
          h("td", {}, String(r.reserved)), h("td", {}, String(r.available)), h("td", {}, String(r.reorder_point)),
          h("td", {}, String(r.reorder_point - r.available)), h("td", {}, time(r.last_movement_at))));
      }
      shown += rows.length;
      after = rows.length ? rows[rows.length - 1].sku : after;
      more.hidden = rows.length < LIST_PAGE;
      count.textContent = shown === 0 ? "No SKU is below its reorder point." : `${shown} SKU${shown === 1 ? "" : "s"} below the reorder point shown.`;
    };
    more.addEventListener("click", () => load().catch((error) => failed(error, part, "list more SKUs")));
    try {
      await load();
    } catch (error) {
      failed(error, part, "list low stock");
    }
  }

  function record(rows, now) {
    for (const row of rows) {
      const samples = lagSamples.get(row.name) || [];
      samples.push({ t: now, value: row.lag_events });
      while (samples.length && samples[0].t < now - SAMPLE_WINDOW_MS) samples.shift();
      lagSamples.set(row.name, samples);
    }
  }

  function projectionTable(rows) {
    return table("Projections: checkpoint, head and lag", ["Projection", "Runner", "Checkpoint", "Head", "Lag (events)", "Oldest unapplied (s)", "Events applied", "Last error"],
      rows.map((p) => h("tr", { "data-projection": p.name, "data-running": String(p.running), "data-lag-events": String(p.lag_events), class: p.running ? "" : "stopped" },
        h("th", { scope: "row" }, p.name),
        h("td", {}, p.running ? ["running", h("br"), h("small", {}, p.held_by || "lock held")] : h("strong", {}, "not running")),
        h("td", {}, p.checkpoint ? String(p.checkpoint.commit) : "none"),
        h("td", {}, p.head ? String(p.head.commit) : "none"),
        h("td", {}, `${p.lag_events_capped ? "≥ " : ""}${p.lag_events}`),
        h("td", {}, p.lag_seconds.toFixed(1)),
        h("td", {}, String(p.events_applied)),
        h("td", {}, p.last_error ? [p.last_error, " (", time(p.last_error_at), ")"] : "—"))),
      { id: "projections" });
  }

  async function projectionsPage(id) {
    heading("Projections");
    view.append(h("p", {}, `Sampled every ${SAMPLE_INTERVAL_MS / 1000} s while this page is open; this tab keeps the last ${SAMPLE_WINDOW_MS / 60000} minutes. Lag counts events in the log after the projection's checkpoint.`));
    const now = section("projection-status", "Now");
    const charts = section("projection-lag", `Lag over the last ${SAMPLE_WINDOW_MS / 60000} minutes`);
    view.append(now, charts);
    const tick = async () => {
      let rows;
      try {
        rows = await api("/v1/projections");
      } catch (error) {
        if (id !== renderId) return;
        stopPolling();
        now.replaceChildren(now.firstChild);
        failed(error, now, "read the projections' status");
        return;
      }
      if (id !== renderId) return;
      record(rows, Date.now());
      now.replaceChildren(now.firstChild, projectionTable(rows));
      const figures = rows.map((p) => {
        const samples = lagSamples.get(p.name) || [];
        const label = `Lag of ${p.name} in events, ${samples.length} samples, latest ${p.lag_events}`;
        return h("figure", { class: "lag", "data-projection": p.name },
          window.LedgerChart.sparkline(samples, { windowMs: SAMPLE_WINDOW_MS, label }),
          h("figcaption", {}, `${p.name}: ${p.lag_events} events behind${p.running ? "" : " — not running"}`));
      });
      charts.replaceChildren(charts.firstChild, h("div", { class: "lag-grid" }, figures));
    };
    await tick();
    if (id === renderId && poller === null && !view.hidden) poller = setInterval(tick, SAMPLE_INTERVAL_MS);
  }

  // The anchor of the whole log, as GET /v1/anchor reports it: recomputed from the event store
  // on each request, shown as the server sent it. The console checks nothing itself; auditors
  // keep the anchor elsewhere and verify against it with ledger-replay.
  function anchorList(anchor) {
    const item = (label, field, value, wide) => h("div", { class: wide ? "wide" : null }, h("dt", {}, label), h("dd", { "data-field": field }, value));
    const position = anchor.log_position;
    return h("dl", { class: "balances anchor", id: "anchor" },
      item("Log position", "log_position", position ? `${position.commit}/${position.prepare}` : "none (the log is empty)"),
      item("Taken at", "taken_at", time(anchor.taken_at)),
      item("Streams", "streams", String(anchor.streams)),
      item("Events", "events", String(anchor.events)),
      item("Merkle root", "merkle_root", h("code", { class: "hash" }, anchor.merkle_root), true),
      item("Format", "format", anchor.format));
  }

  async function auditPage(id) {
    heading("Audit");
    view.append(h("p", {}, "An anchor is a digest of every stream's head at one log position. Keep it outside the system; ",
      "later, ", h("code", {}, "ledger-replay verify --anchor FILE"), " shows whether the log up to that position changed, and ",
      h("code", {}, "ledger-replay verify-proof"), " checks a SKU's inclusion proof against it. This page shows what the API reports; it verifies nothing itself."));
    const part = section("anchor-now", "Anchor of the log now");
    const again = h("button", { type: "button", id: "anchor-again" }, "Take a new anchor");
    view.append(part);
    const load = async () => {
      part.replaceChildren(part.firstChild);
      part.setAttribute("aria-busy", "true");
      status.textContent = "Taking an anchor: the API reads and hashes the whole log.";
      let anchor;
      try {
        anchor = await api("/v1/anchor");
      } catch (error) {
        if (id !== renderId) return;
        part.setAttribute("aria-busy", "false");
        failed(error, part, "read the anchor", "the audit role (auditor or admin)");
        return;
      }
      if (id !== renderId) return;
      part.setAttribute("aria-busy", "false");
      part.append(anchorList(anchor), again,
        h("details", {}, h("summary", {}, "The anchor as the API sent it (JSON, to keep)"),
          h("pre", { id: "anchor-json", tabindex: "0" }, JSON.stringify(anchor, null, 2))));
      status.textContent = `Anchor taken at log position ${anchor.log_position ? `${anchor.log_position.commit}/${anchor.log_position.prepare}` : "none"}, root ${anchor.merkle_root}.`;
    };
    again.addEventListener("click", () => {
      // The button is taken out while the new anchor loads; give it the focus back.
      load().then(() => { if (id === renderId && again.isConnected) again.focus(); });
    });
    await load();
  }

  // Routing: #/find, #/sku/<sku>, #/sku/<sku>/at/<version>, #/low-stock, #/projections,
  // #/audit.

  async function route() {
    const hash = location.hash;
    if (!hash.startsWith("#/")) return;
    stopPolling();
    announce("");
    const id = ++renderId;
    const [path, search] = hash.slice(2).split("?");
    const parts = path.split("/").map((part) => {
      try {
        return decodeURIComponent(part);
      } catch (_) {
        return part;
      }
    });
    const query = new URLSearchParams(search || "");
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === parts[0]) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    view.textContent = "";
    view.setAttribute("aria-busy", "false");
    try {
      if (parts[0] === "find") await findPage(id, query);
      else if (parts[0] === "sku" && parts.length === 2) await skuPage(id, parts[1], query);
      else if (parts[0] === "sku" && parts.length === 4 && parts[2] === "at") await asOfPage(id, parts[1], parts[3]);
      else if (parts[0] === "low-stock") await lowStockPage(id);
      else if (parts[0] === "projections") await projectionsPage(id);
      else if (parts[0] === "audit") await auditPage(id);
      else {
        heading("No such page");
        view.append(h("p", {}, "No console page has this address. ", h("a", { href: "#/find" }, "Find a SKU"), "."));
      }
    } catch (error) {
      if (id === renderId) failed(error, view, "show this page");
    }
  }

  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = tokenInput.value.trim();
    tokenInput.value = "";
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    signIn.hidden = true;
    view.hidden = false;
    session.hidden = false;
    moveFocus = true;
    route();
  });

  document.getElementById("forget").addEventListener("click", () => {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    view.textContent = "";
    showSignIn("The token was forgotten; enter one to go on.");
  });

  window.addEventListener("hashchange", () => {
    moveFocus = true;
    if (!signIn.hidden) return;
    route();
  });

  async function start() {
    if (!location.hash.startsWith("#/")) history.replaceState(null, "", "#/find");
    if (token) {
      session.hidden = false;
    } else {
      // A server running open needs no token; one that does answers 401.
      try {
        await api("/v1/projections");
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) {
          showSignIn();
          return;
        }
      }
    }
    route();
  }

  start();
})();
