// Review console keyboard shortcuts (queue and job pages). Every shortcut drives the same
// buttons and forms a mouse would: nothing here talks to the server except the preview
// preference. The shortcuts are listed on each page (#help).
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "TEXTAREA" || (tag === "INPUT" && !/^(radio|checkbox|button|submit)$/.test(el.type));
  }

  function submit(form) {
    if (!form) return;
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
  }

  // --- the preview: blurred and grayscale unless revealed ------------------------------------
  var img = document.getElementById("preview");
  var state = document.getElementById("preview-state");
  var revealed = img ? !img.classList.contains("blurred") : false;
  var peeking = false;

  function show(on) {
    if (!img) return;
    img.classList.toggle("blurred", !on);
    img.alt = on ? "The image under review" : "The image under review (blurred)";
    if (state) state.textContent = on ? "Shown" : "Blurred and grayscale";
  }
  function toggle() { revealed = !revealed; show(revealed); }

  var frame = document.getElementById("frame");
  if (frame) frame.addEventListener("click", toggle);

  var pref = document.getElementById("reveal-pref");
  if (pref) pref.addEventListener("change", function () {
    fetch("/api/v1/me/prefs", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ reveal_previews: pref.checked }),
      credentials: "same-origin"
    });
    revealed = pref.checked;
    show(revealed);
  });

  // --- the decision form ---------------------------------------------------------------------
  var form = document.getElementById("decision");
  var reason = document.getElementById("reason");
  var bankRow = document.getElementById("bank-row");
  var bank = document.getElementById("bank");
  var hint = document.getElementById("form-hint");
  var fieldset = form ? form.querySelector("fieldset") : null;
  var usable = form && !(fieldset && fieldset.disabled);

  function syncBank() {
    if (!form || !bankRow) return;
    var chosen = form.querySelector('input[name="action"]:checked');
    bankRow.hidden = !(chosen && chosen.value === "remove_ban");
  }
  if (form) {
    form.addEventListener("change", syncBank);
    form.addEventListener("submit", function (ev) {
      var chosen = form.querySelector('input[name="action"]:checked');
      var missing = !chosen ? "Choose an action first." : (!reason.value ? "Choose a policy reason (1-8)." : "");
      if (missing) { ev.preventDefault(); if (hint) hint.textContent = missing; }
    });
  }

  function pick(key) {
    if (!usable) return false;
    var radio = form.querySelector('input[name="action"][data-key="' + key + '"]');
    if (!radio) return false;
    radio.checked = true;
    syncBank();
    if (radio.value === "remove_ban" && bank) bank.focus();
    if (hint) hint.textContent = "";
    return true;
  }

  function pickReason(n) {
    if (!usable || !reason || n >= reason.options.length) return false;
    reason.selectedIndex = n;
    if (hint) hint.textContent = "";
    return true;
  }

  function toggleHelp() {
    var help = document.getElementById("help");
    if (help) help.hidden = !help.hidden;
  }

  function queueKey(key) {
    var f = document.querySelector('form[data-key="' + key + '"], a[data-key="' + key + '"]');
    if (!f) return false;
    if (f.tagName === "A") window.location.href = f.href; else submit(f);
    return true;
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var target = ev.target;
    if (typing(target)) {
      if (ev.key === "Escape") target.blur();
      return;
    }
    if (target && target.tagName === "SELECT") {
      // Arrows and letters choose within the select; Enter submits, Escape leaves it.
      if (ev.key === "Enter" && form && usable) { ev.preventDefault(); submit(form); }
      else if (ev.key === "Escape") target.blur();
      return;
    }
    var key = ev.key;
    var done = false;
    if (key === " " || key === "Spacebar") {
      if (img) { ev.preventDefault(); if (!ev.repeat) { peeking = true; show(true); } }
      return;
    }
    if (key === "?") { toggleHelp(); done = true; }
    else if (!form && /^[rsaeo]$/.test(key) && queueKey(key)) { done = true; }
    else if (/^[crbeuo]$/.test(key)) { done = pick(key); }
    else if (/^[1-9]$/.test(key)) { done = pickReason(parseInt(key, 10)); }
    else if (key === "Enter") { if (usable) { submit(form); done = true; } }
    else if (key === "n") { submit(document.getElementById("skip")); done = !!document.getElementById("skip"); }
    else if (key === "t") { var take = document.getElementById("take"); if (take) { take.click(); done = true; } }
    else if (key === "v") { toggle(); done = !!img; }
    else if (key === "q") { var back = document.getElementById("back"); if (back) { window.location.href = back.href; done = true; } }
    if (done) ev.preventDefault();
  });

  document.addEventListener("keyup", function (ev) {
    if ((ev.key === " " || ev.key === "Spacebar") && peeking) {
      peeking = false;
      show(revealed);
    }
  });
})();
