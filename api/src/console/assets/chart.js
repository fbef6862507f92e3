// SVG charts for the console: a SKU's timeline (one vertex per history entry for each series,
// alert markers, drag to zoom) and small lag sparklines. No library: the charts are plain SVG
// elements styled by console.css.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attributes, text) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attributes || {})) {
      node.setAttribute(key, String(value));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function round(value) {
    return Math.round(value * 10) / 10;
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
      if (step * magnitude >= value) return step * magnitude;
    }
    return 10 * magnitude;
  }

  function timeLabel(ms, spanMs) {
    const iso = new Date(ms).toISOString();
    if (spanMs > 2 * 86400000) return iso.slice(0, 10);
    if (spanMs > 600000) return iso.slice(11, 16);
    return iso.slice(11, 23);
  }

  // The series drawn, in drawing order: [field of a history entry, legend label].
  const SERIES = [
    ["reorder_point_after", "Reorder point"],
    ["on_hand_after", "On hand"],
    ["reserved_after", "Reserved"],
    ["available_after", "Available"],
  ];

  // entries: history entries in version order; alerts: the SKU's alerts; options.onZoom(fromMs,
  // toMs) is called when the user drags across the plot.
  function timeline(entries, alerts, options) {
    const width = 960, height = 300;
    const left = 60, right = 16, top = 20, bottom = 36;
    const plotWidth = width - left - right, plotHeight = height - top - bottom;
    const times = entries.map((entry) => Date.parse(entry.recorded_at));
    let t0 = Infinity, t1 = -Infinity;
    for (const t of times) { t0 = Math.min(t0, t); t1 = Math.max(t1, t); }
    if (!(t1 > t0)) { t0 -= 500; t1 += 500; }
    let top_value = 0;
    for (const entry of entries) {
      top_value = Math.max(top_value, entry.on_hand_after, entry.reserved_after, entry.reorder_point_after);
    }
    const yMax = niceMax(top_value * 1.05);
    const x = (ms) => round(left + ((ms - t0) / (t1 - t0)) * plotWidth);
    const y = (units) => round(top + plotHeight - (units / yMax) * plotHeight);

    const svg = el("svg", {
      viewBox: `0 0 ${width} ${height}`,
      class: "timeline",
      role: "img",
      "aria-labelledby": "timeline-title timeline-desc",
      "data-points": entries.length,
    });
    svg.appendChild(el("title", { id: "timeline-title" }, options.title));
    svg.appendChild(el("desc", { id: "timeline-desc" }, options.description));

    const grid = el("g", { class: "grid" });
    for (let i = 0; i <= 4; i++) {
      const units = (yMax * i) / 4;
      grid.appendChild(el("line", { x1: left, x2: width - right, y1: y(units), y2: y(units) }));
      grid.appendChild(el("text", { x: left - 6, y: y(units) + 4, class: "tick-y" }, String(Math.round(units))));
    }
    for (let i = 0; i <= 4; i++) {
      const ms = t0 + ((t1 - t0) * i) / 4;
      const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
      grid.appendChild(el("text", { x: x(ms), y: height - 12, class: "tick-x", "text-anchor": anchor }, timeLabel(ms, t1 - t0)));
    }
    svg.appendChild(grid);

    for (const [field, label] of SERIES) {
      const points = entries.map((entry, i) => `${x(times[i])},${y(entry[field])}`).join(" ");
      const line = el("polyline", {
        points,
        class: `series series-${field}`,
        "data-series": field,
        "data-points": entries.length,
      });
      line.appendChild(el("title", {}, label));
      svg.appendChild(line);
    }

    // Alert markers at the entry whose version opened (or closed) the alert.
    const index = new Map(entries.map((entry, i) => [entry.version, i]));
    const markers = el("g", { class: "alerts" });
    const mark = (version, kind, text) => {
      const i = index.get(version);
      if (i === undefined) return;
      const at = x(times[i]);
      const group = el("g", { class: `alert-${kind}`, "data-alert": kind, "data-version": version, "data-x": at });
      group.appendChild(el("line", { x1: at, x2: at, y1: top, y2: top + plotHeight }));
      const tip = kind === "opened" ? `${at - 5},${top - 8} ${at + 5},${top - 8} ${at},${top}` : `${at - 4},${top} ${at + 4},${top} ${at},${top - 8}`;
      group.appendChild(el("polygon", { points: tip }));
      group.appendChild(el("title", {}, text));
      markers.appendChild(group);
    };
    for (const alert of alerts) {
      mark(alert.opened_version, "opened", `Alert ${alert.alert_id} opened at version ${alert.opened_version}: available ${alert.available_at_open} below reorder point ${alert.reorder_point_at_open}`);
      if (alert.closed_version !== null && alert.closed_version !== undefined) {
        mark(alert.closed_version, "closed", `Alert ${alert.alert_id} closed at version ${alert.closed_version} (${alert.close_reason || "closed"})`);
      }
    }
    svg.appendChild(markers);

    // Drag across the plot to zoom to that time range.
    const band = el("rect", { class: "zoom-band", x: 0, y: top, width: 0, height: plotHeight, visibility: "hidden" });
    const surface = el("rect", { class: "zoom-surface", x: left, y: top, width: plotWidth, height: plotHeight });
    svg.appendChild(band);
    svg.appendChild(surface);
    let start = null;
    const plotX = (event) => {
      const box = svg.getBoundingClientRect();
      const scaled = ((event.clientX - box.left) / box.width) * width;
      return Math.min(Math.max(scaled, left), left + plotWidth);
    };
    const toMs = (px) => t0 + ((px - left) / plotWidth) * (t1 - t0);
    surface.addEventListener("pointerdown", (event) => {
      start = plotX(event);
      surface.setPointerCapture(event.pointerId);
      band.setAttribute("visibility", "visible");
      band.setAttribute("x", start);
      band.setAttribute("width", 0);
    });
    surface.addEventListener("pointermove", (event) => {
      if (start === null) return;
      const now = plotX(event);
      band.setAttribute("x", Math.min(start, now));
      band.setAttribute("width", Math.abs(now - start));
    });
    surface.addEventListener("pointerup", (event) => {
      if (start === null) return;
      const end = plotX(event);
      band.setAttribute("visibility", "hidden");
      const [a, b] = [Math.min(start, end), Math.max(start, end)];
      start = null;
      if (b - a >= 4 && options.onZoom) options.onZoom(Math.floor(toMs(a)), Math.ceil(toMs(b)) + 1);
    });
    return svg;
  }

  // samples: [{t: ms, value: number}] oldest first; one vertex per sample.
  function sparkline(samples, options) {
    const width = 320, height = 72, pad = 4, labels = 16;
    const t1 = samples.length ? samples[samples.length - 1].t : Date.now();
    // The span sampled so far, up to the window: a new page's first samples fill the width.
    let t0 = samples.length ? Math.max(samples[0].t, t1 - options.windowMs) : t1 - options.windowMs;
    if (t1 - t0 < 1000) t0 = t1 - 1000;
    const span = t1 - t0;
    const yMax = niceMax(samples.reduce((most, s) => Math.max(most, s.value), 1));
    const x = (ms) => round(pad + ((ms - t0) / span) * (width - 2 * pad));
    const y = (value) => round(height - pad - (value / yMax) * (height - 2 * pad - labels));
    const svg = el("svg", {
      viewBox: `0 0 ${width} ${height}`,
      class: "sparkline",
      role: "img",
      "aria-label": options.label,
      "data-samples": samples.length,
    });
    svg.appendChild(el("line", { class: "baseline", x1: pad, x2: width - pad, y1: y(0), y2: y(0) }));
    svg.appendChild(el("text", { class: "tick-y", x: width - pad, y: 12 }, `max ${yMax}`));
    svg.appendChild(el("text", { class: "tick-x-start", x: pad, y: 12 }, `since ${new Date(t0).toISOString().slice(11, 19)}`));
    svg.appendChild(el("polyline", {
      class: "series series-lag",
      points: samples.map((s) => `${x(s.t)},${y(s.value)}`).join(" "),
      "data-points": samples.length,
    }));
    return svg;
  }

  window.LedgerChart = { timeline, sparkline };
})();
