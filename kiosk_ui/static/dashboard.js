/* The staff dashboard's only script (no inline script anywhere: the pages' CSP forbids it).
 *
 * Now page: hears the live channel (/dashboard/live, Server-Sent Events), writes each event in
 * the feed at once, and redraws the rooms from the server (/dashboard/now/rooms) so counts and
 * ratios are the server's, never recomputed here. Sync page: shows a sync's progress and
 * reloads when it ends. Everything from the network goes in as text (textContent), never as
 * markup, except the rooms part, which is the hub's own escaped HTML.
 */
"use strict";

(function () {
  var KINDS = ["attendance", "refusal", "alert", "arrival", "sync", "scanner", "outbox"];
  var FEED_MAX = 100;

  var REASONS = {
    unknown_pin: "unknown PIN",
    ambiguous_pin: "a PIN shared by several people (disabled)",
    locked: "PIN pad locked after wrong PINs",
    pin_only: "this person may use the PIN only",
    restricted: "RESTRICTED person for this child",
    not_authorized: "not allowed to take this child",
    person_inactive: "person not active in the roster",
    child_inactive: "child not enrolled in an active room",
    already_in: "already checked in",
    already_out: "already checked out",
    expired: "expired QR code",
    revoked: "revoked badge",
    replayed: "QR code used twice",
    bad_signature: "forged or damaged QR code",
    unknown_key: "QR code from an unknown issuer",
    not_a_token: "not a check-in QR code",
    bad_ticket: "screen timed out",
  };
  var VERBS = { check_in: "checked in", check_out: "checked out", clock_in: "clocked in", clock_out: "clocked out" };
  var METHODS = { pin: "PIN", qr: "QR code", geofence: "phone", staff: "by hand" };

  function clock(iso) {
    var when = iso ? new Date(iso) : new Date();
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  }

  function describe(event) {
    var d = event.data || {};
    var where = event.station_id || d.station_id || "";
    switch (event.kind) {
      case "attendance": {
        var by = d.actor_name && d.actor_name !== d.name ? " by " + d.actor_name : "";
        return {
          cls: d.action,
          text: d.name + " " + (VERBS[d.action] || d.action) + by + " (" + (METHODS[d.method] || d.method) + ", " + where + ")",
        };
      }
      case "refusal":
        return {
          cls: d.reason === "restricted" ? "alert" : "refusal",
          text: "Refused at " + where + ": " + (REASONS[d.reason] || d.reason) + (d.child_name ? ", " + d.child_name : ""),
        };
      case "alert":
        return { cls: "alert", text: d.message || "Alert at " + where };
      case "arrival": {
        var kids = (d.children || []).map(function (c) { return c.name; }).join(", ");
        var state = { arriving: "is arriving", on_site: "is on site", away: "left" }[d.state] || d.state;
        return { cls: "arrival", text: d.name + " " + state + (kids ? " for " + kids : "") };
      }
      case "sync":
        if (d.state === "started") return { cls: "sync", text: "Roster sync started" + (d.by ? " by " + d.by : "") };
        return {
          cls: d.outcome === "failed" ? "alert" : "sync",
          text: "Roster sync finished: " + d.outcome + (d.error ? " (" + d.error + ")" : "") +
            (d.counts ? ", " + d.counts.added + " added, " + d.counts.updated + " updated, " + d.counts.skipped + " did not sync" : ""),
        };
      case "outbox":
        if (d.cloud) return { cls: d.cloud === "online" ? "sync" : "alert", text: "Cloud " + d.cloud + (d.error ? ": " + d.error : "") };
        if (d.rejected) return { cls: "alert", text: d.rejected + " event(s) rejected by the cloud (see Sync & health)" };
        return null;
      case "scanner":
        return {
          cls: d.state === "scanning" ? "sync" : "alert",
          text: "Camera at " + where + ": " + String(d.state || "").replace("_", " ") + (d.detail ? " (" + d.detail + ")" : ""),
        };
      default:
        return null;
    }
  }

  function listen(url, onEvent, status) {
    var source = new EventSource(url);
    source.onopen = function () { if (status) { status.textContent = "live"; status.className = "status live"; } };
    source.onerror = function () {
      if (status) { status.textContent = "reconnecting…"; status.className = "status down"; }
      if (source.readyState === EventSource.CLOSED) {
        // The hub refused the stream (the session ended, say): a browser does not retry that by
        // itself. Ask once whether we are still logged in; the login page if not, else retry.
        fetch("/dashboard/api/now", { credentials: "same-origin" }).then(function (answer) {
          if (answer.status === 401) window.location.reload();
          else window.setTimeout(function () { listen(url, onEvent, status); }, 3000);
        }, function () { window.setTimeout(function () { listen(url, onEvent, status); }, 3000); });
      }
    };
    KINDS.forEach(function (kind) {
      source.addEventListener(kind, function (message) {
        var event;
        try { event = JSON.parse(message.data); } catch (err) { return; }
        onEvent(event);
      });
    });
    return source;
  }

  // -- the Now page ---------------------------------------------------------------------------

  function startNow() {
    var feed = document.getElementById("feed");
    var status = document.getElementById("live-status");
    var rooms = document.getElementById("rooms");
    var find = document.getElementById("find");
    var seen = {};
    var scannerStates = {};
    var busy = false;
    var again = false;
    // At 5:45 PM check-ins come several a second: one redraw a second keeps the page current
    // without every open dashboard asking the hub for the rooms after each one.
    var ROOMS_MIN_GAP_MS = 1000;
    var lastRefresh = 0;

    function applyFilter() {
      if (!find) return;
      var words = find.value.trim().toLowerCase();
      rooms.querySelectorAll("li[data-child], li[data-teacher]").forEach(function (item) {
        var name = (item.querySelector(".name") || item).textContent.toLowerCase();
        item.hidden = words !== "" && name.indexOf(words) < 0;
      });
      // While searching, only the rooms with a match stay, their "Not in" lists open.
      rooms.querySelectorAll("section.room").forEach(function (room) {
        room.hidden = words !== "" && !room.querySelector("li[data-child]:not([hidden]), li[data-teacher]:not([hidden])");
      });
      rooms.querySelectorAll("table.rooms, .summary").forEach(function (el) { el.hidden = words !== ""; });
      if (words !== "") rooms.querySelectorAll("details").forEach(function (d) { d.open = true; });
    }

    function refresh() {
      if (busy) { again = true; return; }
      var wait = lastRefresh + ROOMS_MIN_GAP_MS - Date.now();
      if (wait > 0) {
        busy = true;
        setTimeout(function () { busy = false; refresh(); }, wait);
        return;
      }
      busy = true;
      lastRefresh = Date.now();
      var open = Array.prototype.map.call(rooms.querySelectorAll("details[open]"), function (d) { return d.id; });
      fetch(rooms.dataset.src, { headers: { Accept: "text/html" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.redirected || response.status === 401) { window.location.reload(); throw new Error("logged out"); }
          return response.text();
        })
        .then(function (html) {
          rooms.innerHTML = html; // the hub's own rendered, escaped fragment
          open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
          applyFilter();
        })
        .catch(function () {})
        .then(function () {
          busy = false;
          if (again) { again = false; refresh(); }
        });
    }

    function show(event) {
      if (seen[event.id]) return;
      seen[event.id] = true;
      if (event.kind === "scanner") {
        // Scanners report every few seconds: only a change of state is news.
        var key = event.station_id || "";
        var state = (event.data || {}).state;
        if (scannerStates[key] === state) return;
        scannerStates[key] = state;
      }
      var said = describe(event);
      if (!said) return;
      var item = document.createElement("li");
      item.className = "ev ev-" + said.cls;
      item.dataset.eventId = String(event.id);
      item.dataset.kind = event.kind;
      item.dataset.shownAt = String(Date.now()); // the browser tests measure "seconds to screen" with it
      var time = document.createElement("time");
      time.textContent = clock(event.at);
      item.appendChild(time);
      item.appendChild(document.createTextNode(" " + said.text));
      feed.insertBefore(item, feed.firstChild);
      while (feed.children.length > FEED_MAX) feed.removeChild(feed.lastChild);
      if (event.kind === "attendance") refresh();
    }

    if (find) find.addEventListener("input", applyFilter);
    listen("/dashboard/live", show, status);
  }

  // -- the Sync page --------------------------------------------------------------------------

  function startSync() {
    var progress = document.getElementById("sync-progress");
    if (!progress) return;
    var after = progress.dataset.liveAfter || "0";
    listen("/dashboard/live?kinds=sync&after=" + encodeURIComponent(after), function (event) {
      var said = describe(event);
      if (!said) return;
      progress.hidden = false;
      progress.textContent = said.text;
      if ((event.data || {}).state === "finished") {
        window.setTimeout(function () { window.location.assign("/dashboard/sync#sync-runs"); }, 1200);
      }
    }, null);
  }

  // -- every page -----------------------------------------------------------------------------

  document.addEventListener("submit", function (event) {
    var question = event.target && event.target.dataset ? event.target.dataset.confirm : null;
    if (question && !window.confirm(question)) event.preventDefault();
  });
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });

  var page = document.body.dataset.page;
  if (page === "now") startNow();
  if (page === "sync") startSync();
})();
