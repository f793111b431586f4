/* The door's kiosk: PIN pad -> who you are and your children -> one confirmation.
 *
 * Plain JavaScript, no framework and nothing fetched from the internet. Settings come from
 * data- attributes on <body> and the words from the JSON block #kiosk-strings, so the page
 * runs under a Content-Security-Policy without 'unsafe-inline'.
 *
 * The PIN lives only in the `pin` variable below (never in the DOM, storage or a log) and is
 * dropped as soon as it is sent, on "Clear" and when the screen goes idle. A ticket from
 * /identify is forgotten on idle too, so the next person cannot act for the previous one.
 */
(function () {
  "use strict";

  var body = document.body;
  var station = body.dataset.station;
  if (!station) {
    return; // the set-up page: nothing to drive
  }

  var API = body.dataset.api || "/api/v1";
  var TIME_ZONE = body.dataset.timeZone || undefined;
  var STRINGS = JSON.parse(document.getElementById("kiosk-strings").textContent);
  var LANGS = ["en", "es"];
  var LOCALES = { en: "en-US", es: "es-US" };
  var LANG_KEY = "checkin-edge.lang." + station;

  var PIN_MIN = 4;
  var PIN_MAX = 6;
  var IDLE_MS = 20000; // back to the pad after this long without a touch
  var DONE_MS = 5000; // how long a confirmation stays up
  var REFUSED_MS = 10000; // a refusal stays longer: it is read, maybe twice
  var POPUP_MS = 6000;
  var STATUS_EVERY_MS = 15000;
  var FETCH_TIMEOUT_MS = 8000;
  var LIVE_MAX_AGE_MS = 120000; // a replayed event older than this is news no longer
  var HUB_GRACE_MS = 2500; // an EventSource reconnect this short is not worth a badge
  var LIVE_KINDS = "attendance,refusal,outbox,identified"; // staff alerts never come to the door's screen

  var lang = body.dataset.lang;
  var pin = "";
  var ident = null; // the /identify answer: {ticket, person, children, clock}
  var selected = {}; // child id -> true
  var view = { screen: "pad" }; // what is on screen, enough to redraw it in the other language
  var lastTouch = Date.now();
  var lockedUntil = 0;
  var busy = false;
  var backTimer = null;
  var popupTimer = null;
  var ownEventIds = {}; // events this screen caused: the live channel must not pop them up
  var requestsInFlight = 0;
  var heldLive = []; // live events that arrived while our own request was out
  var liveDown = false;
  var liveDownSince = 0;
  var statusDown = false;

  function $(id) {
    return document.getElementById(id);
  }

  // -- words ---------------------------------------------------------------------------------

  function t(key, vars) {
    var text = (STRINGS[lang] && STRINGS[lang][key]) || STRINGS.en[key] || key;
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return vars && vars[name] !== undefined ? String(vars[name]) : whole;
    });
  }

  function firstName(name) {
    return String(name || "").trim().split(/\s+/)[0] || "";
  }

  function initials(name) {
    var parts = String(name || "").trim().split(/\s+/);
    var first = parts[0] ? parts[0].charAt(0) : "";
    var last = parts.length > 1 ? parts[parts.length - 1].charAt(0) : "";
    return (first + last).toUpperCase();
  }

  function listOf(names) {
    try {
      return new Intl.ListFormat(LOCALES[lang], { style: "long", type: "conjunction" }).format(names);
    } catch (e) {
      return names.join(", ");
    }
  }

  function clockTime(iso) {
    var when = iso ? new Date(iso) : new Date();
    var options = { hour: "numeric", minute: "2-digit" };
    try {
      return new Intl.DateTimeFormat(LOCALES[lang], Object.assign({ timeZone: TIME_ZONE }, options)).format(when);
    } catch (e) {
      // An unknown zone name from the roster: the screen's own clock beats no time at all.
      return new Intl.DateTimeFormat(LOCALES[lang], options).format(when);
    }
  }

  // The same few colours for the same child on every visit; all carry white text at AA.
  var AVATAR_COLOURS = ["#0a4fa0", "#7a1fa2", "#0b6b34", "#9d1422", "#8a4b00", "#005f73", "#4338ca", "#374151"];
  function avatarColour(id) {
    var h = 0;
    for (var i = 0; i < String(id).length; i += 1) {
      h = (h * 31 + String(id).charCodeAt(i)) >>> 0;
    }
    return AVATAR_COLOURS[h % AVATAR_COLOURS.length];
  }

  function refusalText(answer) {
    var data = answer && answer.data;
    var reason = data && typeof data.reason === "string" ? data.reason : null;
    var message = data && typeof data.message === "string" ? data.message : null;
    if (answer && answer.status === 0) {
      return t("error.hub");
    }
    if (answer && answer.status === 401) {
      return t("error.unpaired"); // a screen at another door that was never paired with the hub
    }
    // The hub's own sentence, asked for in this language, so the screen and the JSON API
    // say the same thing; after a switch of language, the same sentence from the table.
    if (message && answer.lang === lang) {
      return message;
    }
    if (reason && STRINGS[lang]["reason." + reason]) {
      return t("reason." + reason);
    }
    return message || t("error.generic");
  }

  function applyLanguage() {
    document.documentElement.lang = lang;
    document.title = t("page.title");
    var nodes = document.querySelectorAll("[data-t]");
    for (var i = 0; i < nodes.length; i += 1) {
      nodes[i].textContent = t(nodes[i].dataset.t);
    }
    var labelled = document.querySelectorAll("[data-t-label]");
    for (var j = 0; j < labelled.length; j += 1) {
      labelled[j].setAttribute("aria-label", t(labelled[j].dataset.tLabel));
    }
    redraw();
  }

  function setLanguage(next, remember) {
    lang = LANGS.indexOf(next) >= 0 ? next : "en";
    if (remember) {
      try {
        localStorage.setItem(LANG_KEY, lang);
      } catch (e) {
        /* private mode or storage full: the choice lasts until the page reloads */
      }
      var url = new URL(window.location.href);
      if (url.searchParams.has("lang")) {
        url.searchParams.set("lang", lang); // a reload keeps what was chosen on screen
        window.history.replaceState(null, "", url.toString());
      }
    }
    applyLanguage();
  }

  // -- screens -------------------------------------------------------------------------------

  function show(screen) {
    var sections = document.querySelectorAll(".screen");
    for (var i = 0; i < sections.length; i += 1) {
      sections[i].hidden = sections[i].id !== "screen-" + screen;
    }
    body.dataset.screen = screen;
    view.screen = screen;
  }

  function redraw() {
    renderPad();
    if (view.screen === "people") {
      renderPeople();
    } else if (view.screen === "staff") {
      renderStaff();
    } else if (view.screen === "done") {
      renderDone();
    } else if (view.screen === "refused") {
      $("refused-message").textContent = refusalText(view.answer);
    }
    if (view.popup && !$("popup").hidden) {
      renderPopup();
    }
  }

  function clearBackTimer() {
    if (backTimer) {
      clearTimeout(backTimer);
      backTimer = null;
    }
  }

  function toIdle() {
    clearBackTimer();
    pin = "";
    ident = null;
    selected = {};
    busy = false;
    view = { screen: "pad", popup: view.popup };
    setPadMessage("", false);
    show("pad");
    renderPad();
  }

  // -- the pad -------------------------------------------------------------------------------

  function isLocked() {
    return Date.now() < lockedUntil;
  }

  function setPadMessage(text, info) {
    var el = $("pad-message");
    el.textContent = text;
    el.classList.toggle("is-info", !!info);
  }

  function renderPad() {
    var dots = $("pin-dots");
    while (dots.firstChild) {
      dots.removeChild(dots.firstChild);
    }
    for (var i = 0; i < pin.length; i += 1) {
      var dot = document.createElement("span");
      dot.className = "dot";
      dots.appendChild(dot);
    }
    dots.setAttribute("aria-label", String(pin.length));
    var locked = isLocked();
    var keys = document.querySelectorAll("#keys .key");
    for (var k = 0; k < keys.length; k += 1) {
      keys[k].disabled = locked || busy;
    }
    $("keys").classList.toggle("is-locked", locked);
    $("pin-ok").disabled = locked || busy || pin.length < PIN_MIN;
    if (locked) {
      setPadMessage(t("pad.locked", { seconds: Math.ceil((lockedUntil - Date.now()) / 1000) }), false);
    } else if (busy) {
      setPadMessage(t("pad.checking"), true);
    } else if (view.padAnswer) {
      setPadMessage(refusalText(view.padAnswer), false);
    }
  }

  function press(key) {
    if (isLocked() || busy) {
      return;
    }
    view.padAnswer = null;
    setPadMessage("", false);
    if (key === "clear") {
      pin = "";
    } else if (key === "back") {
      pin = pin.slice(0, -1);
    } else if (/^[0-9]$/.test(key) && pin.length < PIN_MAX) {
      pin += key;
    }
    renderPad();
    if (pin.length === PIN_MAX) {
      submitPin(); // nobody has a longer PIN: save them the OK
    }
  }

  function lock(seconds) {
    lockedUntil = Date.now() + Math.max(1, seconds) * 1000;
    pin = "";
    renderPad();
  }

  function submitPin() {
    if (pin.length < PIN_MIN || isLocked() || busy) {
      return;
    }
    var secret = pin;
    pin = "";
    busy = true;
    renderPad();
    post("/identify", { station_id: station, method: "pin", secret: secret }).then(function (answer) {
      busy = false;
      if (view.screen !== "pad") {
        return; // went idle or elsewhere meanwhile
      }
      if (answer.ok && answer.data && answer.data.ticket) {
        ident = answer.data;
        if (ident.person && ident.person.role === "staff") {
          openStaff();
        } else {
          openPeople();
        }
        return;
      }
      if (answer.status === 423) {
        var wait = parseInt(answer.retryAfter, 10);
        lock(isNaN(wait) ? 30 : wait);
        return;
      }
      view.padAnswer = answer;
      renderPad();
    });
    secret = null;
  }

  // -- children -----------------------------------------------------------------------------

  function actionFor(child) {
    return child.present ? "check_out" : "check_in";
  }

  function children() {
    return (ident && ident.children) || [];
  }

  function selectable(child) {
    return child.allowed !== false;
  }

  function selectedAction() {
    var list = children();
    for (var i = 0; i < list.length; i += 1) {
      if (selected[list[i].id]) {
        return actionFor(list[i]);
      }
    }
    return null;
  }

  function openPeople() {
    // Pre-select what the visit is for: everyone out -> check them all in, everyone in ->
    // check them all out. With some in and some out, one confirmation does one action (a
    // ticket acts once), so the first child's action is picked and the hint says why.
    selected = {};
    var list = children().filter(selectable);
    var first = list.length ? actionFor(list[0]) : null;
    for (var i = 0; i < list.length; i += 1) {
      if (actionFor(list[i]) === first) {
        selected[list[i].id] = true;
      }
    }
    view = { screen: "people", popup: view.popup };
    show("people");
    renderPeople();
  }

  function isMixed() {
    var list = children().filter(selectable);
    for (var i = 1; i < list.length; i += 1) {
      if (actionFor(list[i]) !== actionFor(list[0])) {
        return true;
      }
    }
    return false;
  }

  function toggleChild(child) {
    if (busy || !selectable(child)) {
      return;
    }
    if (selected[child.id]) {
      delete selected[child.id];
    } else {
      var current = selectedAction();
      if (current && current !== actionFor(child)) {
        selected = {}; // a check-in and a check-out never share one confirmation
      }
      selected[child.id] = true;
    }
    view.answer = null;
    renderPeople();
  }

  function renderPeople() {
    if (!ident) {
      return;
    }
    var person = ident.person || {};
    $("people-hello").textContent = t("people.hello", { name: person.name || "" });
    var list = children();
    // With one child there is nothing to choose, so no hint to read.
    $("people-hint").textContent = list.length > 1 ? (isMixed() ? t("people.mixed") : t("people.pick")) : "";
    var box = $("children");
    while (box.firstChild) {
      box.removeChild(box.firstChild);
    }
    var template = $("tpl-child");
    list.forEach(function (child) {
      var card = template.content.firstElementChild.cloneNode(true);
      var on = !!selected[child.id];
      card.dataset.childId = child.id;
      card.setAttribute("aria-pressed", on ? "true" : "false");
      card.disabled = !selectable(child) || busy;
      var avatar = card.querySelector(".avatar");
      avatar.textContent = initials(child.name);
      avatar.style.backgroundColor = avatarColour(child.id);
      card.querySelector(".child-name").textContent = child.name;
      card.querySelector(".child-room").textContent = child.room || "";
      var state = card.querySelector(".child-state");
      state.textContent = child.present ? t("child.in") : t("child.out");
      state.classList.toggle("is-in", !!child.present);
      var badge = card.querySelector(".child-action");
      if (!selectable(child)) {
        badge.textContent = refusalText({ status: 403, data: { reason: child.reason } });
      } else if (on) {
        badge.textContent = t(child.present ? "child.will_check_out" : "child.will_check_in");
      } else {
        badge.textContent = t(child.present ? "child.tap_check_out" : "child.tap_check_in");
      }
      card.addEventListener("click", function () {
        toggleChild(child);
      });
      box.appendChild(card);
    });
    var action = selectedAction();
    var names = list
      .filter(function (c) {
        return selected[c.id];
      })
      .map(function (c) {
        return firstName(c.name);
      });
    var button = $("people-confirm");
    if (!list.length) {
      button.hidden = true;
      setScreenMessage("people-message", t("people.none"), true);
      return;
    }
    button.hidden = false;
    button.disabled = busy || !action;
    if (busy) {
      button.textContent = t("confirm.sending");
    } else if (action) {
      button.textContent = t(action === "check_in" ? "confirm.check_in" : "confirm.check_out", {
        names: listOf(names),
      });
    } else {
      button.textContent = t("confirm.pick_first");
    }
    setScreenMessage("people-message", view.answer ? refusalText(view.answer) : "", false);
  }

  function setScreenMessage(id, text, info) {
    var el = $(id);
    el.textContent = text;
    el.classList.toggle("is-info", !!info);
  }

  function confirmChildren() {
    var action = selectedAction();
    if (busy || !ident || !action) {
      return;
    }
    var ids = children()
      .filter(function (c) {
        return selected[c.id] && actionFor(c) === action;
      })
      .map(function (c) {
        return c.id;
      });
    act({ ticket: ident.ticket, children: ids, action: action }, "people");
  }

  // -- staff ---------------------------------------------------------------------------------

  function openStaff() {
    view = { screen: "staff", popup: view.popup };
    show("staff");
    renderStaff();
  }

  function staffAction() {
    return ident && ident.clock && ident.clock.present ? "clock_out" : "clock_in";
  }

  function renderStaff() {
    if (!ident) {
      return;
    }
    var person = ident.person || {};
    var clock = ident.clock || {};
    $("staff-hello").textContent = t("people.hello", { name: person.name || "" });
    var state = clock.present ? (clock.since ? t("staff.in_since", { time: clockTime(clock.since) }) : t("staff.in")) : t("staff.out");
    $("staff-state").textContent = state;
    var avatar = $("staff-avatar");
    avatar.textContent = initials(person.name);
    avatar.style.backgroundColor = avatarColour(person.id || "");
    var button = $("staff-confirm");
    button.disabled = busy;
    button.textContent = busy ? t("confirm.sending") : t(staffAction() === "clock_in" ? "staff.clock_in" : "staff.clock_out");
    setScreenMessage("staff-message", view.answer ? refusalText(view.answer) : "", false);
  }

  function confirmStaff() {
    if (busy || !ident) {
      return;
    }
    act({ ticket: ident.ticket, action: staffAction() }, "staff");
  }

  // -- acting --------------------------------------------------------------------------------

  function act(payload, screen) {
    busy = true;
    view.answer = null;
    redraw();
    var names = {};
    children().forEach(function (c) {
      names[c.id] = c.name;
    });
    var personName = ident && ident.person ? ident.person.name : "";
    requestsInFlight += 1;
    post("/attendance", payload).then(function (answer) {
      busy = false;
      var events = answer.ok && answer.data && Array.isArray(answer.data.events) ? answer.data.events : null;
      if (events) {
        if (Object.keys(ownEventIds).length > 500) {
          ownEventIds = {}; // a screen runs for weeks: only the last few matter (live echoes come in ms)
        }
        events.forEach(function (e) {
          if (e.event_id) {
            ownEventIds[e.event_id] = true;
          }
        });
      }
      requestsInFlight -= 1;
      releaseHeldLive();
      if (view.screen !== screen) {
        return; // went idle meanwhile: the event is saved, the next person sees the pad
      }
      if (events) {
        ident = null; // spent: the ticket acts once
        view = {
          screen: "done",
          popup: view.popup,
          lines: events.map(function (e) {
            var subject = e.name || (e.child_id ? names[e.child_id] : personName);
            return { action: e.action, name: firstName(subject || personName), at: e.occurred_at };
          }),
        };
        show("done");
        renderDone();
        backTimer = setTimeout(toIdle, DONE_MS);
        return;
      }
      if (answer.status === 0) {
        // The hub did not answer: keep the ticket, a second tap is safe (the same ticket
        // repeated records nothing twice).
        view.answer = answer;
        redraw();
        return;
      }
      showRefused(answer);
    });
  }

  function renderDone() {
    var list = $("done-lines");
    while (list.firstChild) {
      list.removeChild(list.firstChild);
    }
    (view.lines || []).forEach(function (line) {
      var li = document.createElement("li");
      li.textContent = t("done." + line.action, { name: line.name, time: clockTime(line.at) });
      list.appendChild(li);
    });
  }

  function showRefused(answer) {
    clearBackTimer();
    ident = null;
    view = { screen: "refused", popup: view.popup, answer: answer };
    show("refused");
    $("refused-message").textContent = refusalText(answer);
    backTimer = setTimeout(toIdle, REFUSED_MS);
  }

  // -- talking to the hub --------------------------------------------------------------------

  function post(path, payload) {
    return request(path, { method: "POST", body: JSON.stringify(payload) });
  }

  function request(path, init) {
    var controller = new AbortController();
    var timer = setTimeout(function () {
      controller.abort();
    }, FETCH_TIMEOUT_MS);
    var options = {
      method: init.method || "GET",
      headers: { Accept: "application/json", "Accept-Language": lang },
      cache: "no-store",
      credentials: "same-origin",
      signal: controller.signal,
    };
    if (init.body) {
      options.headers["Content-Type"] = "application/json";
      options.body = init.body;
    }
    return fetch(API + path, options)
      .then(function (res) {
        return res
          .json()
          .catch(function () {
            return null; // an HTML error page from a proxy: never shown as such
          })
          .then(function (data) {
            return {
              ok: res.ok,
              status: res.status,
              data: data,
              lang: options.headers["Accept-Language"],
              retryAfter: res.headers.get("Retry-After"),
            };
          });
      })
      .catch(function () {
        return { ok: false, status: 0, data: null, retryAfter: null };
      })
      .finally(function () {
        clearTimeout(timer);
      });
  }

  // -- connection badges ---------------------------------------------------------------------

  function renderBadges() {
    var hubDown = statusDown || (liveDown && Date.now() - liveDownSince > HUB_GRACE_MS);
    $("status-reconnecting").hidden = !hubDown;
  }

  function pollStatus() {
    request("/status", { method: "GET" }).then(function (answer) {
      statusDown = !answer.ok;
      if (answer.ok && answer.data) {
        var cloud = answer.data.cloud;
        $("status-offline").hidden = !(cloud === "offline" || cloud === "refused");
      }
      renderBadges();
    });
  }

  // -- the live channel ---------------------------------------------------------------------

  function connectLive() {
    var source = new EventSource(API + "/live?station=" + encodeURIComponent(station) + "&kinds=" + LIVE_KINDS);
    source.addEventListener("open", function () {
      liveDown = false;
      renderBadges();
    });
    source.addEventListener("error", function () {
      if (!liveDown) {
        liveDown = true;
        liveDownSince = Date.now();
        setTimeout(renderBadges, HUB_GRACE_MS + 100);
      }
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an answer that was not an event stream, e.g. from a proxy
        // while the hub restarts): start over ourselves.
        source.close();
        setTimeout(connectLive, 5000);
      }
    });
    source.addEventListener("attendance", onLive);
    source.addEventListener("refusal", onLive);
    source.addEventListener("identified", onIdentified);
    source.addEventListener("outbox", function (message) {
      // The outbox announces each change of the cloud's state: no need to wait for the poll.
      try {
        var cloud = (JSON.parse(message.data).data || {}).cloud;
        if (cloud) {
          $("status-offline").hidden = !(cloud === "offline" || cloud === "refused");
        }
      } catch (e) {
        /* not for us */
      }
    });
  }

  function onIdentified(message) {
    // A code shown to this door's camera: the scanner identified the person; this screen
    // shows their children with the ticket, exactly as if the PIN had been typed.
    var event;
    try {
      event = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    var found = event && event.data;
    if (!found || !found.ticket || (event.station_id && event.station_id !== station) || busy) {
      return;
    }
    pin = "";
    ident = found;
    if (ident.person && ident.person.role === "staff") {
      openStaff();
    } else {
      openPeople();
    }
  }

  function onLive(message) {
    var event;
    try {
      event = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    if (!event || (event.station_id && event.station_id !== station)) {
      return;
    }
    if (requestsInFlight > 0) {
      heldLive.push(event); // it may be our own: decide once our answer names its events
      return;
    }
    considerLive(event);
  }

  function releaseHeldLive() {
    if (requestsInFlight > 0) {
      return;
    }
    var held = heldLive;
    heldLive = [];
    held.forEach(considerLive);
  }

  function considerLive(event) {
    var data = event.data || {};
    if (data.event_id && ownEventIds[data.event_id]) {
      return;
    }
    if (event.at && Date.now() - Date.parse(event.at) > LIVE_MAX_AGE_MS) {
      return;
    }
    if (event.kind === "refusal" && (!data.method || data.method === "pin")) {
      return; // a PIN refusal at this door is already on this screen
    }
    view.popup = event;
    renderPopup();
    $("popup").hidden = false;
    if (popupTimer) {
      clearTimeout(popupTimer);
    }
    popupTimer = setTimeout(hidePopup, POPUP_MS);
  }

  function renderPopup() {
    var event = view.popup;
    var data = event.data || {};
    var box = $("popup").firstElementChild;
    var refusal = event.kind === "refusal";
    box.classList.toggle("is-refusal", refusal);
    var name = firstName(data.child_name || data.subject_name || data.name || data.person_name || "");
    if (refusal) {
      $("popup-text").textContent = refusalText({ status: 403, data: data });
    } else {
      var key = "done." + (data.action || "check_in");
      $("popup-text").textContent = t(key, { name: name, time: clockTime(data.occurred_at || event.at) });
    }
    $("popup-sub").textContent = data.method ? t("live." + data.method) : "";
  }

  function hidePopup() {
    $("popup").hidden = true;
    view.popup = null;
    if (popupTimer) {
      clearTimeout(popupTimer);
      popupTimer = null;
    }
  }

  // -- wiring --------------------------------------------------------------------------------

  function onClick(selector, handler) {
    var nodes = document.querySelectorAll(selector);
    for (var i = 0; i < nodes.length; i += 1) {
      nodes[i].addEventListener("click", handler);
    }
  }

  document.querySelectorAll("#keys .key").forEach(function (key) {
    key.addEventListener("click", function () {
      press(key.dataset.key);
    });
  });
  onClick("#pin-ok", submitPin);
  onClick(".lang-toggle", function () {
    setLanguage(lang === "en" ? "es" : "en", true);
  });
  onClick(".cancel", toIdle);
  onClick("#people-confirm", confirmChildren);
  onClick("#staff-confirm", confirmStaff);
  onClick(".back", toIdle);
  onClick("#popup", hidePopup);

  // A physical keyboard (set-up, accessibility): digits, Backspace, Enter, Escape.
  document.addEventListener("keydown", function (e) {
    if (view.screen !== "pad") {
      if (e.key === "Escape") {
        toIdle();
      }
      return;
    }
    if (/^[0-9]$/.test(e.key)) {
      press(e.key);
    } else if (e.key === "Backspace") {
      press("back");
    } else if (e.key === "Escape") {
      press("clear");
    } else if (e.key === "Enter") {
      submitPin();
    } else {
      return;
    }
    e.preventDefault();
  });

  ["pointerdown", "keydown", "touchstart"].forEach(function (type) {
    document.addEventListener(
      type,
      function () {
        lastTouch = Date.now();
      },
      { capture: true, passive: true }
    );
  });

  setInterval(function () {
    if (isLocked() || lockedUntil) {
      if (!isLocked()) {
        lockedUntil = 0;
        setPadMessage("", false);
      }
      renderPad();
    }
    var idle = Date.now() - lastTouch > IDLE_MS;
    if (idle && !busy && (view.screen === "people" || view.screen === "staff" || pin.length || view.padAnswer)) {
      toIdle();
    }
  }, 1000);

  var remembered = null;
  try {
    remembered = localStorage.getItem(LANG_KEY);
  } catch (e) {
    remembered = null;
  }
  if (body.dataset.langForced === "true") {
    setLanguage(lang, true);
  } else {
    setLanguage(remembered || lang, false);
  }
  show("pad");
  renderPad();
  connectLive();
  pollStatus();
  setInterval(pollStatus, STATUS_EVERY_MS);
})();
