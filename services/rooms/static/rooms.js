// ChatPic room page: join with a nickname, live messages over a WebSocket, photos uploaded to
// ingest (checked before anyone sees them), reports, and the owner's controls when the page was
// opened with #owner=<key> (the fragment never reaches a server). No cookies: the owner key is
// kept in this tab's sessionStorage for this room only, so a reload or a second join still has
// it; the join sends it, so the server knows the owner's connections.
(function () {
  "use strict";
  var root = document.getElementById("room");
  if (!root) return;
  var slug = root.dataset.slug, ingest = root.dataset.ingest;
  var $ = function (id) { return document.getElementById(id); };
  var joinForm = $("join"), chat = $("chat"), list = $("messages"), members = $("members");
  var statusEl = $("status"), endedEl = $("ended"), sendForm = $("send"), text = $("text");
  var ownerKey = null, sock = null, me = null, ended = false;
  var storeKey = "chatpic-owner:" + slug;
  function stored() { try { return sessionStorage.getItem(storeKey); } catch (e) { return null; } }
  function keep(k) {
    try { if (k) sessionStorage.setItem(storeKey, k); else sessionStorage.removeItem(storeKey); } catch (e) { /* storage off */ }
  }
  var m = /(?:^#|&)owner=([^&]+)/.exec(location.hash);
  if (m) {
    try { ownerKey = decodeURIComponent(m[1]); } catch (e) { ownerKey = null; }
    keep(ownerKey);
    // Out of the address bar at once: copying the address to invite people must not hand out
    // the owner's controls. The key stays in this tab (sessionStorage) and the owner link is
    // shown to keep.
    history.replaceState(null, "", location.pathname + location.search);
  } else {
    ownerKey = stored();
  }
  function ownerLink() {
    var keepEl = $("owner-keep");
    keepEl.hidden = !ownerKey;
    if (ownerKey) $("owner-link").textContent = location.origin + location.pathname + "#owner=" + encodeURIComponent(ownerKey);
  }
  ownerLink();

  function say(msg) { statusEl.textContent = msg; }
  function el(tag, cls, txt) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (txt !== undefined && txt !== null) e.textContent = txt;
    return e;
  }
  var expires = root.dataset.expires ? new Date(root.dataset.expires) : null;
  if (expires) $("ends").textContent = "Ends at " + expires.toLocaleTimeString() + ".";

  function end(reason) {
    ended = true;
    endedEl.hidden = false;
    endedEl.textContent = reason === "kicked" ? "The room's owner removed you from this room."
      : "This room has ended" + (reason ? " (" + reason + ")" : "") + ".";
    chat.hidden = true; joinForm.hidden = true;
  }

  function reportBox(id) {
    var d = el("details"), s = el("summary", null, "Report");
    var form = el("form"), sel = el("select"), btn = el("button", "btn btn-secondary btn-small", "Send report");
    sel.setAttribute("aria-label", "Reason");
    sel.innerHTML = $("reasons").innerHTML;
    btn.type = "submit";
    form.appendChild(sel); form.appendChild(btn);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      fetch("/api/v1/rooms/" + slug + "/messages/" + id + "/report", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ reason: sel.value, details: "" })
      }).then(function (r) {
        d.replaceChildren(el("span", "muted", r.ok ? "Reported. Thank you." : "Could not report."));
      }).catch(function () { say("Could not send the report."); });
    });
    d.appendChild(s); d.appendChild(form);
    return d;
  }

  function mine(f) { return !!me && String(f.nickname).toLowerCase() === me.nickname.toLowerCase(); }
  function line(f, body) {
    var li = el("li");
    li.dataset.id = f.id;
    li.appendChild(el("span", "who", f.nickname));
    if (f.tripcode) li.appendChild(el("span", "trip", "!" + f.tripcode));
    if (body) li.appendChild(body);
    if (f.id && !mine(f)) li.appendChild(reportBox(f.id));  // no Report on your own
    return li;
  }
  function scrollDown() { list.scrollTop = list.scrollHeight; }
  function add(li) { list.appendChild(li); scrollDown(); }
  function sys(msg) { add(el("li", "sys", msg)); }
  function byId(id) { return list.querySelector('li[data-id="' + CSS.escape(id) + '"]'); }

  function showMessage(f) { add(line(f, el("span", null, f.text))); }
  function showImage(f) {
    var img = el("img");
    img.src = f.url; img.alt = "Photo from " + f.nickname; img.loading = "lazy";
    var li = line(f, img), old = byId(f.id);
    if (old) old.replaceWith(li); else add(li);
  }
  function memberItem(n, t) {
    var li = el("li");
    li.dataset.key = n.toLowerCase();
    li.appendChild(el("span", null, n + (t ? " !" + t : "")));
    if (ownerKey && (!me || n.toLowerCase() !== me.nickname.toLowerCase())) {
      var k = el("button", "btn btn-danger btn-small", "Kick");
      k.type = "button"; k.setAttribute("aria-label", "Kick " + n);
      k.addEventListener("click", function () { owner("kick", { nickname: n }); });
      li.appendChild(k);
    }
    return li;
  }
  function addMember(n, t) { removeMember(n); members.appendChild(memberItem(n, t)); }
  function removeMember(n) {
    var li = members.querySelector('li[data-key="' + CSS.escape(n.toLowerCase()) + '"]');
    if (li) li.remove();
  }

  function owner(action, body) {
    fetch("/api/v1/rooms/" + slug + "/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + ownerKey },
      body: JSON.stringify(body || {})
    }).then(function (r) { return r.json().then(function (j) { say(r.ok ? "Done." : j.message); }); })
      .catch(function () { say("Could not reach the room."); });
  }

  var handlers = {
    welcome: function (f) {
      me = f.you; joinForm.hidden = true; chat.hidden = false;
      members.replaceChildren();
      f.members.forEach(function (x) { addMember(x.nickname, x.tripcode); });
      f.history.forEach(function (x) { (x.type === "image" ? showImage : showMessage)(x); });
      say("You are " + me.nickname + (me.tripcode ? " !" + me.tripcode : "") + ".");
      if (ownerKey && f.owner === false) {  // this key does not open this room
        ownerKey = null; keep(null); ownerLink();
        members.querySelectorAll("button").forEach(function (b) { b.remove(); });
      }
      $("owner").hidden = !ownerKey;
      text.focus();
    },
    message: showMessage,
    image: showImage,
    image_pending: function (f) { add(line({ id: f.id, nickname: me.nickname }, el("span", "sys", "Photo: scanning…"))); },
    image_refused: function (f) {
      var li = byId(f.id);
      if (li) li.replaceChildren(el("span", "sys", "Your photo was not accepted and nobody saw it."));
    },
    join: function (f) { if (!me || f.nickname !== me.nickname) { addMember(f.nickname, f.tripcode); sys(f.nickname + " joined."); } },
    leave: function (f) { removeMember(f.nickname); sys(f.nickname + " left."); },
    kicked: function (f) { removeMember(f.nickname); sys(f.nickname + " was removed by the owner."); },
    muted: function (f) { sys(f.nickname + " was muted by a moderator."); },
    removed: function (f) { var li = byId(f.id); if (li) li.remove(); },
    closed: function (f) { end(f.reason); },
    pong: function () {},
    error: function (f) {
      say(f.message + (f.retry_after ? " (try again in " + f.retry_after + " s)" : ""));
      if (f.code === "kicked" || f.code === "room_ended") end(f.code === "kicked" ? "kicked" : "");
      // Before joining the socket stays open for another try (a taken nickname: pick another).
      if (!me && !ended && f.code !== "kicked" && f.code !== "room_ended") joinForm.hidden = false;
    }
  };

  function sendJoin(nickname, secret) {
    var j = { type: "join", nickname: nickname };
    if (secret) j.secret = secret;
    if (ownerKey) j.owner_key = ownerKey;
    sock.send(JSON.stringify(j));
  }
  function connect(nickname, secret) {
    var url = location.origin.replace(/^http/, "ws") + "/api/v1/rooms/" + slug + "/ws";
    sock = new WebSocket(url);
    say("Joining…");
    sock.onopen = function () {
      sendJoin(nickname, secret);
    };
    sock.onmessage = function (ev) {
      var f; try { f = JSON.parse(ev.data); } catch (e) { return; }
      var h = handlers[f.type]; if (h) h(f);
    };
    sock.onclose = function () {
      sock = null;
      if (!ended && me) say("Disconnected. Reload the page to join again.");
      else if (!ended) joinForm.hidden = false;
    };
  }

  joinForm.hidden = false;
  joinForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    joinForm.hidden = true;
    var nick = $("nickname").value.trim(), secret = $("secret").value;
    if (sock && sock.readyState === 1 && !me) { say("Joining…"); sendJoin(nick, secret); }
    else connect(nick, secret);
  });
  sendForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var t = text.value.trim();
    if (!t || !sock || sock.readyState !== 1) return;
    sock.send(JSON.stringify({ type: "message", text: t }));
    text.value = "";
  });
  $("photo").addEventListener("change", function () {
    var file = this.files && this.files[0];
    this.value = "";
    if (!file || !sock) return;
    var data = new FormData();
    data.append("file", file);
    say("Uploading photo…");
    fetch(ingest + "/api/v1/images", { method: "POST", body: data, credentials: "omit" })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
      .then(function (res) {
        if (!res.ok) { say(res.j.message || "The photo was refused."); return; }
        say("");
        sock.send(JSON.stringify({ type: "image", image_id: res.j.image_id, owner_token: res.j.owner_token }));
      })
      .catch(function () { say("Could not upload the photo."); });
  });
  $("close-room").addEventListener("click", function () {
    if (confirm("End this room for everyone now?")) owner("close");
  });
})();
