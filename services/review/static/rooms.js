// Rooms queue keyboard shortcuts. Every shortcut drives the same radios, selects and forms a
// mouse would; closing a room asks to confirm. The shortcuts are listed on the page (#help).
(function () {
  "use strict";
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.report"));
  var current = -1;

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "TEXTAREA" || (tag === "INPUT" && !/^(radio|checkbox|button|submit)$/.test(el.type));
  }

  function select(i) {
    if (!cards.length) return false;
    i = Math.max(0, Math.min(cards.length - 1, i));
    if (current >= 0 && cards[current]) {
      cards[current].classList.remove("selected");
      cards[current].removeAttribute("aria-current");
    }
    current = i;
    var card = cards[current];
    card.classList.add("selected");
    card.setAttribute("aria-current", "true");
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest" });
    return true;
  }

  function form() { return current >= 0 ? cards[current].querySelector("form.decision") : null; }
  function hint(text) {
    var f = form();
    var h = f ? f.querySelector(".hint") : null;
    if (h) h.textContent = text;
  }

  function pick(key) {
    var f = form();
    var radio = f ? f.querySelector('input[name="action"][data-key="' + key + '"]') : null;
    if (!radio) return false;
    radio.checked = true;
    hint("");
    return true;
  }

  function pickReason(n) {
    var f = form();
    var reason = f ? f.querySelector("select.reason") : null;
    if (!reason || n >= reason.options.length) return false;
    reason.selectedIndex = n;
    hint("");
    return true;
  }

  function submit() {
    var f = form();
    if (!f) return false;
    if (f.requestSubmit) f.requestSubmit(); else if (check(f)) f.submit();
    return true;
  }

  function check(f) {
    var chosen = f.querySelector('input[name="action"]:checked');
    var reason = f.querySelector("select.reason");
    if (!chosen) { hint("Choose an action first (r, m, c or d)."); return false; }
    if (!reason.value) { hint("Choose a policy reason (1-8)."); return false; }
    if (chosen.value === "close") {
      var room = f.closest("article").querySelector(".room-name");
      var name = room ? room.textContent : "this room";
      return window.confirm("Close the room \u201c" + name + "\u201d for everyone now?");
    }
    return true;
  }

  cards.forEach(function (card, i) {
    var f = card.querySelector("form.decision");
    if (f) f.addEventListener("submit", function (ev) { if (!check(f)) ev.preventDefault(); });
    card.addEventListener("focusin", function () { if (current !== i) select(i); });
  });

  var preselected = cards.findIndex(function (c) { return c.dataset.selected === "true"; });
  select(preselected >= 0 ? preselected : 0);

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var target = ev.target;
    if (typing(target)) {
      if (ev.key === "Escape") target.blur();
      else if (ev.key === "Enter") { ev.preventDefault(); submit(); }
      return;
    }
    if (target && target.tagName === "SELECT") {
      if (ev.key === "Enter") { ev.preventDefault(); submit(); }
      else if (ev.key === "Escape") target.blur();
      return;
    }
    var key = ev.key;
    var done = false;
    if (key === "j") done = select(current + 1);
    else if (key === "k") done = select(current - 1);
    else if (/^[rmcd]$/.test(key)) done = pick(key);
    else if (/^[1-9]$/.test(key)) done = pickReason(parseInt(key, 10));
    else if (key === "Enter") done = submit();
    else if (key === "n") {
      var note = form() ? form().querySelector('input[name="note"]') : null;
      if (note) { note.focus(); done = true; }
    }
    else if (key === "?") {
      var help = document.getElementById("help");
      if (help) { help.hidden = !help.hidden; done = true; }
    }
    else if (key === "q") {
      var back = document.getElementById("back");
      if (back) { window.location.href = back.href; done = true; }
    }
    if (done) ev.preventDefault();
  });
})();
