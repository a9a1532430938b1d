// geotel team map: Leaflet (vendored, served by this service) over /v1/map.json.
// Layers: basemap tiles (only when the service configures a tile URL; the territories are
// the offline map), territories, accounts by days since the last verified visit, today's
// path per rep (work day only), reps now with their accuracy circles. A rep opens its day
// from /v1/map/rep.json. Markers are updated in place on each refresh, not redrawn.
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var at = params.get("at");
  var filt = {territory: params.get("territory") || "", region: params.get("region") || ""};
  var openRep = params.get("rep");
  // The viewer token, when the service requires one, comes in the fragment (/map#token=...):
  // a fragment is never sent to a server or written to its logs; the page sends it as a
  // Bearer header.
  var token = new URLSearchParams(window.location.hash.replace(/^#/, "")).get("token");
  var headers = token ? {"Authorization": "Bearer " + token} : {};
  var COLOURS = {visiting: "#2e7d32", travelling: "#1565c0", stopped: "#ef6c00",
                 off_duty: "#9e9e9e"};
  var config = {refresh_s: 5, tile_url: null};
  var geoVersion = null, territories = null, fitted = false, timer = null;
  var lastAccounts = 0, lastPathsAt = 0, selected = null, lastPaths = {};
  var PATHS_EVERY_MS = 30000, ACCOUNTS_EVERY_MS = 60000;
  var reps = {};  // rep_id -> {marker, accuracy, path, data}
  var stats = {started: performance.now(), firstRenderMs: null, lastRenderMs: null,
               lastFetchMs: null, updates: 0};
  window.geotelMap = {stats: stats};

  var map = L.map("map", {preferCanvas: false, zoomSnap: 0.25});
  // One pane (and SVG) per layer, stacked in this order whatever is redrawn when.
  [["territories", 401], ["accounts", 402], ["paths", 403], ["accuracy", 404],
   ["alerts", 405], ["reps", 406]].forEach(function (p) { map.createPane(p[0]).style.zIndex = p[1]; });
  var terrLayer = L.geoJSON(null, {style: terrStyle, onEachFeature: onTerritory,
                                   pane: "territories"});
  var accLayer = L.layerGroup();
  var pathLayer = L.layerGroup();
  var accuracyLayer = L.layerGroup();
  var repLayer = L.layerGroup();
  var alertLayer = L.layerGroup();
  var overlays = {"territories": terrLayer, "accounts (coverage)": accLayer,
                  "today's paths": pathLayer, "accuracy": accuracyLayer, "alerts": alertLayer,
                  "reps": repLayer};
  var lastAlerts = [];
  [terrLayer, accLayer, pathLayer, accuracyLayer, alertLayer, repLayer].forEach(function (l) { l.addTo(map); });
  window.geotelMap.map = map;

  function q(obj) {
    return Object.keys(obj).filter(function (k) { return obj[k] !== null && obj[k] !== ""; })
      .map(function (k) { return k + "=" + encodeURIComponent(obj[k]); }).join("&");
  }
  function getJSON(url) {
    return fetch(url, {cache: "no-store", headers: headers}).then(function (r) {
      if (!r.ok) { throw new Error(url.split("?")[0] + ": HTTP " + r.status); }
      return r.json();
    });
  }
  function age(s) {
    if (s === null || s === undefined) { return "-"; }
    if (s < 90) { return s + " s ago"; }
    if (s < 5400) { return Math.round(s / 60) + " min ago"; }
    return (s / 3600).toFixed(1) + " h ago";
  }
  function hm(iso) {
    if (!iso) { return "-"; }
    var d = new Date(iso);
    return d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hour12: false});
  }
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function mins(s) { return s === null || s === undefined ? "-" : Math.round(s / 60) + " min"; }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function tag(layer, attrs) {  // data attributes on the SVG element of a vector layer
    var e = layer.getElement && layer.getElement();
    if (!e) { return; }
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k] === null ? "" : String(attrs[k])); });
  }

  // -- territories ---------------------------------------------------------------------
  function terrStyle(f) {
    var n = (f.properties.reps_now || 0);
    var assigned = (f.properties.assigned_reps || 0) > 0;
    return {color: assigned ? "#37474f" : "#90a4ae", weight: assigned ? 1.6 : 0.8,
            fillColor: n ? "hsl(210, 70%, " + (88 - 38 * Math.min(1, n / 4)).toFixed(0) + "%)" : "#f5f6f8",
            fillOpacity: config.tile_url ? 0.35 : 0.9, className: "territory",
            pane: "territories"};
  }
  function onTerritory(f, layer) {
    layer.bindTooltip(f.id + (f.properties.name ? " " + f.properties.name : ""),
                      {sticky: true});
    layer.on("add", function () {
      tag(layer, {"data-territory-id": f.id, "data-region": f.properties.region,
                  "data-assigned": f.properties.assigned_reps || 0,
                  "data-reps": f.properties.reps_now || 0});
    });
  }
  function setTerritories(fc) {
    territories = fc;
    terrLayer.clearLayers();
    terrLayer.addData(fc);
    var regions = {}, tsel = document.getElementById("territory"),
        rsel = document.getElementById("region");
    tsel.length = 1; rsel.length = 1;
    fc.features.slice().sort(function (a, b) { return a.id < b.id ? -1 : 1; }).forEach(function (f) {
      tsel.add(new Option(f.id + (f.properties.name ? " " + f.properties.name : ""), f.id));
      if (f.properties.region) { regions[f.properties.region] = true; }
    });
    Object.keys(regions).sort().forEach(function (r) { rsel.add(new Option(r, r)); });
    tsel.value = filt.territory; rsel.value = filt.region;
  }
  function colourTerritories(data) {
    var counts = data.counts.territory || {};
    terrLayer.eachLayer(function (layer) {
      var f = layer.feature;
      f.properties.reps_now = counts[f.id] || 0;
      layer.setStyle(terrStyle(f));
      tag(layer, {"data-reps": f.properties.reps_now});
    });
  }

  // -- reps ---------------------------------------------------------------------------------
  function repTip(r) {
    return r.rep_id + ": " + r.status.replace("_", " ") +
      (r.territory_id ? " in " + r.territory_id : "") + (r.account_id ? " at " + r.account_id : "") +
      "<br>last fix " + age(r.last_fix_age_s) +
      (r.accuracy_m !== null && r.accuracy_m !== undefined ? " (\u00b1" + Math.round(r.accuracy_m) + " m)" : "") +
      "<br>" + r.field_minutes + " field min, " + r.visits_today + " verified visits, " +
      r.km_today + " km today";
  }
  function drawReps(data) {
    var seen = {};
    data.reps.forEach(function (r) {
      seen[r.rep_id] = true;
      var e = reps[r.rep_id];
      if (r.lon === null || r.lat === null) {
        if (e) { removeRep(r.rep_id); }
        return;
      }
      var ll = [r.lat, r.lon];
      var style = {radius: 9, color: "#111", weight: 2.5, fillColor: COLOURS[r.status] || "#000",
                   fillOpacity: 1, className: "rep " + r.status, pane: "reps"};
      if (!e) {
        e = reps[r.rep_id] = {data: r};
        e.marker = L.circleMarker(ll, style).addTo(repLayer);
        e.marker.bindTooltip("", {direction: "top"});
        e.marker.on("click", function () { selectRep(r.rep_id); });
        e.accuracy = L.circle(ll, {radius: r.accuracy_m || 0, weight: 1, color: COLOURS[r.status],
                                   opacity: 0.5, fillOpacity: 0.08, interactive: false,
                                   className: "accuracy", pane: "accuracy"}).addTo(accuracyLayer);
      } else {
        e.marker.setLatLng(ll);
        e.marker.setStyle(style);
        e.accuracy.setLatLng(ll);
        e.accuracy.setRadius(r.accuracy_m || 0);
        e.accuracy.setStyle({color: COLOURS[r.status]});
      }
      e.data = r;
      e.marker.setTooltipContent(repTip(r));
      tag(e.marker, {"data-rep-id": r.rep_id, "data-status": r.status,
                     "data-territory-id": r.territory_id,
                     "data-last-fix-age-s": r.last_fix_age_s});
      e.marker.getElement().setAttribute("class", "leaflet-interactive rep " + r.status);
      tag(e.accuracy, {"data-rep-id": r.rep_id, "data-accuracy-m": r.accuracy_m});
    });
    Object.keys(reps).forEach(function (id) { if (!seen[id]) { removeRep(id); } });
  }
  function removeRep(id) {
    var e = reps[id];
    repLayer.removeLayer(e.marker); accuracyLayer.removeLayer(e.accuracy);
    if (e.path) { pathLayer.removeLayer(e.path); }
    delete reps[id];
  }
  function drawPaths(paths) {
    lastPaths = paths;
    Object.keys(reps).forEach(function (id) {
      var e = reps[id], coords = paths[id];
      if (!coords || coords.length < 2) {
        if (e.path) { pathLayer.removeLayer(e.path); e.path = null; }
        return;
      }
      var lls = coords.map(function (c) { return [c[1], c[0]]; });
      var style = {color: id === selected ? "#d81b60" : COLOURS[e.data.status],
                   weight: id === selected ? 5 : 2.5, opacity: id === selected ? 0.95 : 0.6,
                   interactive: false, className: "path", pane: "paths"};
      if (e.path) { e.path.setLatLngs(lls); e.path.setStyle(style); }
      else { e.path = L.polyline(lls, style).addTo(pathLayer); }
      tag(e.path, {"data-rep-id": id, "data-points": coords.length});
    });
  }

  // -- accounts -----------------------------------------------------------------------------
  function covClass(d) {
    if (d === null || d === undefined) { return "cov-old"; }
    return d <= 7 ? "cov-week" : d <= 30 ? "cov-month" : "cov-old";
  }
  var COV = {"cov-week": "#00897b", "cov-month": "#f9a825", "cov-old": "#e57373"};
  function drawAccounts(accounts) {
    accLayer.clearLayers();
    accounts.forEach(function (a) {
      var c = covClass(a.days_since_verified);
      var m = L.circleMarker([a.lat, a.lon], {radius: 3, weight: 0, color: "#444",
                                              fillColor: COV[c], fillOpacity: 0.75,
                                              className: "account " + c,
                                              pane: "accounts"}).addTo(accLayer);
      m.bindTooltip(a.account_id + (a.name ? " " + a.name : "") + "<br>last verified visit: " +
        (a.days_since_verified === null ? "none in the lookback" : a.days_since_verified + " days ago"));
      tag(m, {"data-account-id": a.account_id, "data-days": a.days_since_verified,
              "data-coverage": c});
    });
  }

  // -- alerts --------------------------------------------------------------------------------
  var RULES = {late_start: "late start", long_break: "long break", long_workday: "long work day",
               unverified_visit: "visit GPS cannot confirm", out_of_territory: "outside territory"};
  function alertText(a) {
    var d = a.detail || {}, t = (RULES[a.rule] || a.rule) + ", " + a.rep_id + " at " + hm(a.raised_at);
    if (a.rule === "unverified_visit") {
      t += ": " + (d.account_id || "?") + (d.distance_m !== null && d.distance_m !== undefined ?
        ", " + d.distance_m + " m from the account" : "") + ", " + mins(d.duration_s);
    } else if (a.rule === "long_break") { t += ": " + mins(d.duration_s); }
    else if (a.rule === "late_start") { t += ": started " + d.started_local; }
    else if (a.rule === "out_of_territory") { t += ": " + mins(d.outside_s) + " outside"; }
    else if (a.rule === "long_workday") { t += ": " + mins(d.workday_s); }
    return t + (a.resolved_at ? " (ended " + hm(a.resolved_at) + ")" : " (open)");
  }
  function drawAlerts(alerts) {
    lastAlerts = alerts;
    alertLayer.clearLayers();
    alerts.forEach(function (a) {
      if (a.lon === null || a.lat === null) { return; }
      var m = L.circleMarker([a.lat, a.lon], {radius: 13, weight: 3, color: "#c2185b",
                                              dashArray: a.resolved_at ? "4 3" : null,
                                              fill: false, pane: "alerts",
                                              className: "alert " + a.rule}).addTo(alertLayer);
      m.bindTooltip(alertText(a));
      tag(m, {"data-alert-id": a.alert_id, "data-rule": a.rule, "data-rep-id": a.rep_id});
    });
  }

  // -- side panel ------------------------------------------------------------------------------
  function drawSide(data) {
    var ul = document.getElementById("status-counts");
    ul.textContent = "";
    var total = document.createElement("li");
    total.className = "total";
    total.setAttribute("data-status", "all");
    total.setAttribute("data-count", String(data.counts.reps));
    total.textContent = data.counts.reps + " reps";
    ul.appendChild(total);
    ["visiting", "travelling", "stopped", "off_duty"].forEach(function (s) {
      var li = document.createElement("li");
      var n = data.counts.status[s] || 0;
      li.className = s;
      li.setAttribute("data-status", s);
      li.setAttribute("data-count", String(n));
      li.textContent = s.replace("_", " ") + ": " + n;
      ul.appendChild(li);
    });
    var names = {}, assigned = {};
    (territories ? territories.features : []).forEach(function (f) {
      names[f.id] = f.properties.name || "";
      assigned[f.id] = f.properties.assigned_reps || 0;
    });
    var tb = document.querySelector("#territory-table tbody");
    tb.textContent = "";
    Object.keys(data.counts.territory).sort(function (a, b) {
      return data.counts.territory[b] - data.counts.territory[a] || (a < b ? -1 : 1);
    }).forEach(function (tid) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-territory-id", tid);
      tr.setAttribute("data-reps", String(data.counts.territory[tid]));
      cell(tr, tid); cell(tr, names[tid] || "");
      cell(tr, String(data.counts.territory[tid]), "num");
      cell(tr, String(assigned[tid] || 0), "num");
      tb.appendChild(tr);
    });
    var rb = document.querySelector("#rep-table tbody");
    var frag = document.createDocumentFragment();
    data.reps.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-rep-id", r.rep_id);
      tr.setAttribute("data-status", r.status);
      tr.setAttribute("data-field-minutes", String(r.field_minutes));
      if (r.rep_id === selected) { tr.className = "selected"; }
      cell(tr, r.rep_id);
      cell(tr, r.status.replace("_", " ")).className = "status-cell";
      cell(tr, r.territory_id || "-");
      cell(tr, String(r.field_minutes), "num");
      cell(tr, String(r.visits_today), "num");
      cell(tr, age(r.last_fix_age_s));
      frag.appendChild(tr);
    });
    rb.textContent = "";
    rb.appendChild(frag);
  }

  // -- one rep's day -------------------------------------------------------------------------------
  var FIGURES = [["workday_s", "work day", mins], ["field_s", "in the field", mins],
                 ["travel_s", "travelling", mins], ["customer_s", "at customers", mins],
                 ["break_s", "breaks", mins], ["unknown_s", "unknown", mins],
                 ["out_territory_s", "outside territory", mins],
                 ["distance_m", "distance", function (v) { return (v / 1000).toFixed(1) + " km"; }],
                 ["visits", "visits", String], ["verified_visits", "verified visits", String]];
  function selectRep(id) {
    selected = id;
    document.querySelectorAll("#rep-table tbody tr").forEach(function (tr) {
      tr.className = tr.getAttribute("data-rep-id") === id ? "selected" : "";
    });
    drawPaths(lastPaths);
    var panel = document.getElementById("rep-panel");
    panel.hidden = false;
    panel.setAttribute("data-state", "loading");
    panel.setAttribute("data-rep-id", id);
    document.getElementById("rep-title").textContent = id;
    getJSON("/v1/map/rep.json?" + q({rep: id, at: at})).then(function (d) {
      if (selected !== id) { return; }
      drawRepDay(d);
      panel.setAttribute("data-state", "ready");
    }).catch(function (e) { showError(e); panel.setAttribute("data-state", "error"); });
  }
  function drawRepDay(d) {
    document.getElementById("rep-summary").textContent = d.local_date + " (" + (d.tz || "-") +
      "): work day " + hm(d.workday_start) + " - " +
      (d.workday_end ? hm(d.workday_end) + (d.workday_end_inferred ? " (so far)" : "") : "-");
    var fb = document.querySelector("#rep-figures tbody");
    fb.textContent = "";
    FIGURES.forEach(function (f) {
      if (!d.figures || d.figures[f[0]] === undefined) { return; }
      var tr = document.createElement("tr");
      tr.setAttribute("data-figure", f[0]);
      tr.setAttribute("data-value", String(d.figures[f[0]]));
      cell(tr, f[1]); cell(tr, f[2](d.figures[f[0]]), "num");
      fb.appendChild(tr);
    });
    var al = document.getElementById("rep-alerts");
    al.textContent = "";
    lastAlerts.filter(function (a) { return a.rep_id === d.rep_id; }).forEach(function (a) {
      var li = document.createElement("li");
      li.setAttribute("data-alert-id", a.alert_id);
      li.setAttribute("data-rule", a.rule);
      li.textContent = alertText(a);
      al.appendChild(li);
    });
    var ol = document.getElementById("timeline");
    ol.textContent = "";
    d.timeline.forEach(function (e) {
      var li = document.createElement("li");
      li.setAttribute("data-kind", e.kind);
      li.setAttribute("data-start", e.start);
      if (e.end) { li.setAttribute("data-end", e.end); }
      if (e.segment_id) { li.setAttribute("data-segment-id", e.segment_id); }
      var text = hm(e.start) + (e.end ? " - " + hm(e.end) : "") + "  ";
      if (e.kind === "workday_start") { text += "work day starts" + (e.inferred ? " (inferred)" : ""); }
      else if (e.kind === "workday_end") { text += "work day ends"; }
      else if (e.kind === "gap") { text += "unknown (" + mins(e.duration_s) + ", no data)"; }
      else if (e.kind === "visit") {
        li.setAttribute("data-account-id", e.account_id || "");
        li.setAttribute("data-outcome", e.outcome || "");
        text += "visit " + (e.account_id || "?") + (e.outcome ? ": " + e.outcome : "") +
          (e.verified ? " (GPS verified)" : " (not verified)") + ", " + mins(e.duration_s);
      } else if (e.kind === "travel") {
        text += "travel " + (e.distance_m / 1000).toFixed(1) + " km, " + mins(e.duration_s);
      } else {
        text += e.kind + (e.place_id ? " at " + e.place_id : "") + ", " + mins(e.duration_s);
      }
      li.textContent = text;
      ol.appendChild(li);
    });
    var vb = document.querySelector("#rep-visits tbody");
    vb.textContent = "";
    d.visits.forEach(function (v) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-segment-id", v.segment_id);
      tr.setAttribute("data-outcome", v.outcome || "");
      cell(tr, hm(v.start)); cell(tr, v.account_id || "-"); cell(tr, v.outcome || "-");
      cell(tr, v.verified ? "yes" : "no");
      cell(tr, v.order_total ? v.order_total + " " + (v.order_currency || "") : "-", "num");
      var td = cell(tr, "");
      if (v.form || v.notes || (v.tags && v.tags.length)) {
        var pre = document.createElement("pre");
        pre.className = "form";
        pre.textContent = [v.tags && v.tags.length ? "tags: " + v.tags.join(", ") : "",
                           v.notes ? "notes: " + v.notes : "",
                           v.form ? JSON.stringify(v.form, null, 1) : ""].filter(Boolean).join("\n");
        td.appendChild(pre);
      }
      vb.appendChild(tr);
    });
    var e = reps[d.rep_id];
    if (e && e.path) { map.fitBounds(e.path.getBounds(), {maxZoom: 15, padding: [30, 30]}); }
  }
  document.getElementById("rep-close").addEventListener("click", function () {
    selected = null;
    drawPaths(lastPaths);
    document.getElementById("rep-panel").hidden = true;
  });
  document.querySelector("#rep-table tbody").addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr");
    if (tr) { selectRep(tr.getAttribute("data-rep-id")); }
  });

  // -- filters and time -----------------------------------------------------------------------
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function setTimeInputs() {
    var d = at ? new Date(at) : new Date();
    document.getElementById("day").value = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
    document.getElementById("time").value = pad(d.getHours()) + ":" + pad(d.getMinutes());
  }
  function navigate() {  // the filters are in the address, so a view can be shared
    var p = {at: at, territory: filt.territory, region: filt.region, rep: selected};
    window.location.search = q(p);
  }
  function onTimeChange() {
    var day = document.getElementById("day").value, time = document.getElementById("time").value || "12:00";
    if (!day) { return; }
    at = new Date(day + "T" + time).toISOString();
    navigate();
  }
  document.getElementById("day").addEventListener("change", onTimeChange);
  document.getElementById("time").addEventListener("change", onTimeChange);
  document.getElementById("live").addEventListener("click", function () { at = null; navigate(); });
  document.getElementById("territory").addEventListener("change", function (ev) {
    filt.territory = ev.target.value; navigate();
  });
  document.getElementById("region").addEventListener("change", function (ev) {
    filt.region = ev.target.value; navigate();
  });
  function showError(e) {
    var err = document.getElementById("error");
    err.textContent = "update failed: " + e.message;
    err.hidden = false;
  }

  // -- refresh loop ---------------------------------------------------------------------------------
  function render(data) {
    var t0 = performance.now();
    if (data.territories) { setTerritories(data.territories); geoVersion = data.geo_version; }
    if (!fitted && data.bbox) {
      map.fitBounds([[data.bbox[1], data.bbox[0]], [data.bbox[3], data.bbox[2]]]);
      fitted = true;
    }
    if (territories) { colourTerritories(data); }
    drawReps(data);
    if (data.paths) { drawPaths(data.paths); }
    if (data.accounts) { drawAccounts(data.accounts); }
    if (data.alerts) { drawAlerts(data.alerts); }
    drawSide(data);
    document.getElementById("when").textContent = (at ? "as of " : "live, ") +
      new Date(data.at).toLocaleString() + (at ? "" : " - refreshes every " + config.refresh_s + " s");
    var ms = performance.now() - t0;
    stats.lastRenderMs = ms; stats.updates += 1;
    if (stats.firstRenderMs === null) {  // since the script started / since navigation
      stats.firstRenderMs = performance.now() - stats.started;
      stats.readyMs = performance.now();
    }
    document.body.setAttribute("data-render-ms", ms.toFixed(1));
    document.body.setAttribute("data-updated", data.at);
    document.body.setAttribute("data-updates", String(stats.updates));
    document.body.setAttribute("data-state", "ready");
    if (openRep) { var r = openRep; openRep = null; selectRep(r); }
  }
  // Reps every refresh; paths (the heavy part: ~100 points per rep) every 30 s and
  // accounts every minute, or at once when `full`.
  function refresh(full) {
    var now = performance.now();
    var wantAccounts = map.hasLayer(accLayer) &&
      (full || lastAccounts === 0 || now - lastAccounts > ACCOUNTS_EVERY_MS);
    var wantPaths = map.hasLayer(pathLayer) &&
      (full || lastPathsAt === 0 || now - lastPathsAt > PATHS_EVERY_MS);
    var query = {at: at, territory: filt.territory, region: filt.region,
                 territories: territories && geoVersion !== null ? "0" : null,
                 paths: wantPaths ? "1" : null, alerts: wantPaths ? "1" : null,
                 accounts: wantAccounts ? "1" : null};
    var t0 = performance.now();
    return getJSON("/v1/map.json?" + q(query)).then(function (data) {
      stats.lastFetchMs = performance.now() - t0;
      document.getElementById("error").hidden = true;
      if (territories && data.geo_version !== geoVersion) {
        territories = null; geoVersion = null;  // a new territory set: fetch outlines again
        return 0;
      }
      if (data.accounts) { lastAccounts = performance.now(); }
      if (data.paths) { lastPathsAt = performance.now(); }
      render(data);
      return at ? 60000 : config.refresh_s * 1000;
    }).catch(function (e) { showError(e); return config.refresh_s * 1000; })
      .then(function (delay) { timer = window.setTimeout(refresh, delay); });
  }
  window.geotelMap.refresh = function (full) { window.clearTimeout(timer); return refresh(full); };

  getJSON("/map/config.json").catch(function () { return config; }).then(function (c) {
    config = c;
    if (c.tile_url) {
      L.tileLayer(c.tile_url, {maxZoom: c.tile_max_zoom || 19,
                               attribution: esc(c.tile_attribution || "")}).addTo(map);
      document.body.setAttribute("data-basemap", "tiles");
    } else {
      document.body.setAttribute("data-basemap", "territories");
    }
    L.control.layers(null, overlays, {collapsed: false}).addTo(map);
    map.on("overlayadd", function (ev) {
      if (ev.layer === pathLayer) { lastPathsAt = 0; window.geotelMap.refresh(); }
      if (ev.layer === accLayer) { lastAccounts = 0; window.geotelMap.refresh(); }
    });
    map.attributionControl.setPrefix('<a href="/map/vendor/leaflet/LICENSE">Leaflet</a>');
    map.setView([0, 0], 2);
    setTimeInputs();
    refresh();
  });
})();
