// geotel live team map: fetches /v1/map.json and draws territories and reps as SVG.
// No libraries, no tiles: an equirectangular projection scaled by cos(latitude) is
// accurate enough at the size of a sales region.
(function () {
  "use strict";
  var REFRESH_MS = 5000;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var W = 1000;
  var params = new URLSearchParams(window.location.search);
  var at = params.get("at");
  // The viewer token, when the service requires one, comes in the fragment (/map#token=...):
  // a fragment is never sent to a server or written to its logs; the page sends it as a
  // Bearer header.
  var token = new URLSearchParams(window.location.hash.replace(/^#/, "")).get("token");
  var geoVersion = null;
  var territories = null;
  var proj = null;

  function el(name, attrs, parent) {
    var e = document.createElementNS(SVG_NS, name);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(e); }
    return e;
  }

  function projection(bbox) {
    var minx = bbox[0], miny = bbox[1], maxx = bbox[2], maxy = bbox[3];
    var kx = Math.cos(((miny + maxy) / 2) * Math.PI / 180);
    var spanx = Math.max((maxx - minx) * kx, 1e-6), spany = Math.max(maxy - miny, 1e-6);
    var pad = 20, scale = (W - 2 * pad) / spanx;
    var h = Math.round(spany * scale + 2 * pad);
    return {
      height: h,
      xy: function (lon, lat) {
        return [pad + (lon - minx) * kx * scale, pad + (maxy - lat) * scale];
      }
    };
  }

  function ringPath(ring) {
    return ring.map(function (c, i) {
      var p = proj.xy(c[0], c[1]);
      return (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1);
    }).join("") + "Z";
  }

  function geomPath(g) {
    var polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
    return polys.map(function (rings) { return rings.map(ringPath).join(""); }).join("");
  }

  function fillFor(n) {
    if (!n) { return null; }
    var t = Math.min(1, n / 4);
    var light = 88 - 38 * t;
    return "hsl(210, 70%, " + light.toFixed(0) + "%)";
  }

  function drawTerritories(data) {
    var g = document.getElementById("territories"), lg = document.getElementById("labels");
    g.textContent = ""; lg.textContent = "";
    var svg = document.getElementById("map");
    svg.setAttribute("viewBox", "0 0 " + W + " " + proj.height);
    territories.features.forEach(function (f) {
      var p = el("path", {d: geomPath(f.geometry), "class": "territory",
                          "data-territory-id": f.id}, g);
      var t = el("title", {}, p);
      t.textContent = f.id + (f.properties.name ? " " + f.properties.name : "");
      var b = p.getBBox();
      var label = el("text", {x: (b.x + b.width / 2).toFixed(1), y: (b.y + b.height / 2).toFixed(1),
                              "class": "territory-label"}, lg);
      label.textContent = f.id;
    });
  }

  function colourTerritories(data) {
    var counts = data.counts.territory || {};
    document.querySelectorAll("#territories path").forEach(function (p) {
      var n = counts[p.getAttribute("data-territory-id")] || 0;
      p.setAttribute("data-reps", String(n));
      var fill = fillFor(n);
      p.setAttribute("class", "territory" + (fill ? "" : " empty"));
      if (fill) { p.setAttribute("fill", fill); } else { p.removeAttribute("fill"); }
    });
  }

  function drawReps(data) {
    var g = document.getElementById("reps");
    g.textContent = "";
    data.reps.forEach(function (r) {
      if (r.lon === null || r.lat === null) { return; }
      var p = proj.xy(r.lon, r.lat);
      var c = el("circle", {cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: 7,
                            "class": "rep " + r.status, "data-rep-id": r.rep_id,
                            "data-status": r.status,
                            "data-territory-id": r.territory_id || ""}, g);
      var t = el("title", {}, c);
      t.textContent = r.rep_id + ": " + r.status.replace("_", " ") +
        (r.territory_id ? " in " + r.territory_id : "") +
        (r.account_id ? " at " + r.account_id : "") +
        ", " + r.field_minutes + " field min today";
    });
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }

  function age(s) {
    if (s === null || s === undefined) { return "-"; }
    if (s < 90) { return s + " s ago"; }
    if (s < 5400) { return Math.round(s / 60) + " min ago"; }
    return (s / 3600).toFixed(1) + " h ago";
  }

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
    rb.textContent = "";
    data.reps.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-rep-id", r.rep_id);
      tr.setAttribute("data-status", r.status);
      tr.setAttribute("data-field-minutes", String(r.field_minutes));
      cell(tr, r.rep_id);
      var st = cell(tr, r.status.replace("_", " "));
      st.className = "status-cell";
      cell(tr, r.territory_id || "-");
      cell(tr, String(r.field_minutes), "num");
      cell(tr, String(r.visits_today), "num");
      cell(tr, age(r.last_fix_age_s));
      rb.appendChild(tr);
    });
  }

  function render(data) {
    if (data.territories) {
      territories = data.territories;
      geoVersion = data.geo_version;
    }
    if (!proj && data.bbox) { proj = projection(data.bbox); }
    if (!proj) { return; }
    if (data.territories) { drawTerritories(data); }
    if (territories) { colourTerritories(data); }
    drawReps(data);
    drawSide(data);
    document.getElementById("when").textContent = (at ? "as of " : "live, ") +
      new Date(data.at).toLocaleString() + " - refreshes every " + REFRESH_MS / 1000 + " s";
    document.body.setAttribute("data-updated", data.at);
    document.body.setAttribute("data-state", "ready");
  }

  function refresh() {
    var q = [];
    if (at) { q.push("at=" + encodeURIComponent(at)); }
    if (territories && geoVersion !== null) { q.push("territories=0"); }
    var headers = token ? {"Authorization": "Bearer " + token} : {};
    fetch("/v1/map.json" + (q.length ? "?" + q.join("&") : ""),
          {cache: "no-store", headers: headers})
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (data) {
        document.getElementById("error").hidden = true;
        if (territories && data.geo_version !== geoVersion) {
          territories = null; proj = null;  // a new territory set: fetch outlines again
          return 0;
        }
        render(data);
        return REFRESH_MS;
      })
      .catch(function (e) {
        var err = document.getElementById("error");
        err.textContent = "update failed: " + e.message;
        err.hidden = false;
        return REFRESH_MS;
      })
      .then(function (delay) { window.setTimeout(refresh, delay); });
  }

  refresh();
})();
