// ChatPic upload page: progressive enhancement of the plain <form action="/upload">.
// Without this script the form posts normally and the next page offers the link options.
// With it: choose / take / drop / paste a photo, upload with a real progress bar, wait for the
// safety check, then post the link options to the links service as a normal form navigation.
// No cookies, no storage, nothing from other sites.
(function () {
  "use strict";

  var form = document.getElementById("upload");
  if (!form || !window.FormData || !window.XMLHttpRequest || !("upload" in new XMLHttpRequest())) {
    return; // old browser: the plain form keeps working
  }
  document.documentElement.classList.add("js");
  form.noValidate = true; // a dropped or pasted file is not in the input; we check it ourselves

  var $ = function (id) { return document.getElementById(id); };
  var fileInput = $("file");
  var cameraInput = $("camera");
  var fileLabel = $("file-label");
  var cameraLabel = $("camera-label");
  var drop = $("drop");
  var dropEmpty = $("drop-empty");
  var preview = $("preview");
  var frame = $("preview-frame");
  var fileName = $("file-name");
  var fileSize = $("file-size");
  var pick = $("pick");
  var progressView = $("progress");
  var steps = $("steps");
  var bar = $("bar");
  var pct = $("pct");
  var statusEl = $("status");
  var detailEl = $("status-detail");
  var actions = $("progress-actions");
  var cancelBtn = $("cancel");
  var againLink = $("again");
  var options = $("options");
  var errorEl = $("error");
  var go = $("go");
  var announceEl = $("announce");

  var linksUrl = (form.getAttribute("data-links-url") || "").replace(/\/+$/, "");
  var maxBytes = Number(form.getAttribute("data-max-bytes")) || 0;
  var chosen = null;
  var previewUrl = null;
  var busy = false;
  var xhr = null;
  var timer = null;

  // Reveal the controls that need this script.
  options.hidden = false;
  $("drop-hint").hidden = false;
  go.textContent = "Upload & get link";
  if (window.matchMedia && window.matchMedia("(pointer: coarse)").matches) {
    cameraInput.hidden = false; // capture="environment" opens the camera directly on phones
    cameraLabel.hidden = false;
    $("drop-hint").hidden = true; // nothing to drag on a phone
  }

  // The exact byte limit (the page only knows whole megabytes).
  fetch("/api/v1/limits", { cache: "no-store", credentials: "omit" })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (l) { if (l && l.max_bytes) { maxBytes = l.max_bytes; } })
    .catch(function () {});

  function formatSize(n) {
    if (n < 1024) { return n + " B"; }
    if (n < 1024 * 1024) { return Math.round(n / 1024) + " KB"; }
    return (n / (1024 * 1024)).toFixed(1) + " MB";
  }

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
  }

  function clearError() {
    errorEl.hidden = true;
    errorEl.textContent = "";
  }

  function say(status, detail) {
    statusEl.textContent = status;
    detailEl.textContent = detail || "";
  }

  function precheck(file) {
    if (!file.size) { return "This file is empty. Choose another photo."; }
    if (maxBytes && file.size > maxBytes) {
      return "This file is " + formatSize(file.size) + "; photos can be up to " +
        formatSize(maxBytes) + ". Choose a smaller one.";
    }
    return "";
  }

  function showPreview(file) {
    if (previewUrl) { URL.revokeObjectURL(previewUrl); }
    previewUrl = URL.createObjectURL(file);
    frame.textContent = "";
    var img = document.createElement("img");
    img.alt = "Preview of the chosen photo";
    img.onerror = function () {
      // Not something this browser can draw (HEIC in most browsers, or not an image at all).
      frame.textContent = "";
      var note = document.createElement("span");
      note.className = "doc";
      note.textContent = "No preview available";
      frame.appendChild(note);
    };
    img.src = previewUrl;
    frame.appendChild(img);
    fileName.textContent = file.name || "Pasted image";
    fileSize.textContent = formatSize(file.size);
    dropEmpty.hidden = true;
    preview.hidden = false;
    drop.classList.add("has-file");
    fileLabel.textContent = "Change photo";
    fileLabel.className = "btn btn-secondary";
  }

  function choose(file) {
    if (busy || !file) { return; }
    chosen = file;
    clearError();
    if (file !== (fileInput.files && fileInput.files[0])) {
      try { // keep the plain form in step, so a native submit would send the same file
        var dt = new DataTransfer();
        dt.items.add(file);
        fileInput.files = dt.files;
      } catch (e) { /* not supported: we upload `chosen` ourselves anyway */ }
    }
    showPreview(file);
    var calm = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    go.scrollIntoView({ block: "nearest", behavior: calm ? "auto" : "smooth" }); // next step in view
    var problem = precheck(file);
    if (problem) {
      showError(problem);
    } else {
      announceEl.textContent = "Chosen: " + (file.name || "pasted image") + ", " + formatSize(file.size) + ".";
    }
  }

  function setStep(name, state) {
    var passed = true;
    Array.prototype.forEach.call(steps.children, function (li) {
      var current = li.getAttribute("data-step") === name;
      if (current) { passed = false; }
      li.classList.toggle("done", passed && !current);
      li.classList.remove("failed", "held");
      if (current) {
        li.setAttribute("aria-current", "step");
        if (state) { li.classList.add(state); }
      } else {
        li.removeAttribute("aria-current");
      }
    });
  }

  function setProgress(fraction) {
    var p = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    bar.value = p;
    pct.textContent = p + " %";
  }

  function setBusy(on) {
    busy = on;
    pick.hidden = on;
    options.hidden = on;
    $("watermark-field").hidden = on;
    go.hidden = on;
    progressView.hidden = !on;
    actions.hidden = !on;
    cancelBtn.hidden = !on;
    againLink.hidden = true;
    form.classList.remove("is-scanning");
  }

  function fail(message) {
    if (timer) { clearTimeout(timer); timer = null; }
    var hadFocus = document.activeElement === cancelBtn;
    setBusy(false);
    say("", "");
    showError(message);
    if (hadFocus) { go.focus(); }
  }

  function finish(status, detail, state) {
    // The photo will not get a link now; offer a fresh start.
    form.classList.remove("is-scanning");
    setStep("scan", state);
    say(status, detail);
    cancelBtn.hidden = true;
    againLink.hidden = false;
  }

  function httpMessage(status) {
    if (status === 413) { return "The file is larger than the upload limit."; }
    if (status === 429) { return "Too many uploads from your connection. Try again later."; }
    if (status >= 500) { return "Something went wrong on our side. Try again in a moment."; }
    return "The upload did not work (HTTP " + status + "). Try again.";
  }

  // The JSON API answers {image_id, owner_token, ...} or {code, message}. Until the page is told
  // where the links service lives, the same form is posted to /upload and its answer is read:
  // the next page's link form (action and hidden fields) or the error page's message.
  function readAnswer(req) {
    var type = req.getResponseHeader("Content-Type") || "";
    if (type.indexOf("json") >= 0) {
      var body = null;
      try { body = JSON.parse(req.responseText); } catch (e) { body = null; }
      if (req.status === 202 && body && body.image_id && body.owner_token) {
        return { imageId: body.image_id, ownerToken: body.owner_token, action: linksUrl + "/links/new" };
      }
      return { error: (body && body.message) || httpMessage(req.status) };
    }
    if (type.indexOf("html") >= 0) {
      var doc = new DOMParser().parseFromString(req.responseText, "text/html");
      var linkForm = doc.getElementById("link-form");
      if (req.status === 202 && linkForm) {
        var field = function (name) {
          var el = linkForm.querySelector('input[name="' + name + '"]');
          return el ? el.value : "";
        };
        return { imageId: field("image_id"), ownerToken: field("owner_token"), action: linkForm.getAttribute("action") };
      }
      var msg = doc.querySelector("[data-error-message]");
      return { error: msg ? msg.textContent.trim() : httpMessage(req.status) };
    }
    return { error: httpMessage(req.status) };
  }

  function upload(file) {
    clearError();
    setBusy(true);
    setStep("upload");
    setProgress(0);
    say("Uploading…");
    var body = new FormData();
    body.append("file", file, file.name || "pasted-image");
    var mark = form.querySelector('input[name="watermark"]');
    if (mark && mark.value.trim()) { body.append("watermark", mark.value.trim()); }
    var viaApi = Boolean(linksUrl);
    xhr = new XMLHttpRequest();
    xhr.open("POST", viaApi ? "/api/v1/images" : form.action);
    xhr.setRequestHeader("Accept", viaApi ? "application/json" : "text/html");
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable && e.total) { setProgress(e.loaded / e.total); }
    };
    xhr.upload.onload = function () {
      // Every byte is with us now: cancelling could no longer take the photo back.
      cancelBtn.hidden = true;
      setProgress(1);
      say("Uploaded", "Removing location and camera data…");
    };
    xhr.onload = function () {
      var req = xhr;
      xhr = null;
      setProgress(1);
      var answer = readAnswer(req);
      if (answer.error) { fail(answer.error); } else { scan(answer); }
    };
    xhr.onerror = function () {
      xhr = null;
      fail("The upload was interrupted. Check your connection and try again.");
    };
    xhr.onabort = function () {
      xhr = null;
      setBusy(false);
      say("", "");
      announceEl.textContent = "Upload cancelled.";
      go.focus();
    };
    xhr.send(body);
  }

  function scan(info) {
    setStep("scan");
    cancelBtn.hidden = true;
    form.classList.add("is-scanning");
    say("Scanning…", "Checking your photo before anyone can see it. This usually takes a few seconds.");
    var started = Date.now();
    var delay = 400;
    var url = "/api/v1/images/" + encodeURIComponent(info.imageId);
    var tick = function () {
      fetch(url, { cache: "no-store", credentials: "omit", headers: { Accept: "application/json" } })
        .then(function (r) {
          return r.json().then(function (b) { return { ok: r.ok, body: b }; });
        })
        .then(function (res) {
          var status = res.body && res.body.status;
          if (!res.ok) {
            fail((res.body && res.body.message) || "We lost track of this upload. Try again.");
          } else if (status === "pending") {
            if (Date.now() - started > 20000) {
              detailEl.textContent = "This is taking longer than usual. Keep this page open.";
            }
            delay = Math.min(delay * 1.4, 3000);
            timer = setTimeout(tick, delay);
          } else if (status === "cleared") {
            createLink(info);
          } else if (status === "review") {
            finish("Held for review",
              "A moderator needs to look at this photo before it can be shared. Keep this page open: " +
              "if it is approved, your link is made right away.", "held");
            timer = setTimeout(tick, 10000);
          } else {
            finish("This photo can’t be shared",
              "It did not pass the safety check, so no link can be made for it.", "failed");
          }
        })
        .catch(function () { timer = setTimeout(tick, 2000); });
    };
    tick();
  }

  function createLink(info) {
    form.classList.remove("is-scanning");
    setStep("link");
    say("Cleared", "Creating your link…");
    againLink.hidden = true;
    // A plain form post (a navigation, not a cross-origin fetch): the links service answers with
    // the page that shows the new link.
    var out = document.createElement("form");
    out.method = "post";
    out.action = info.action;
    out.hidden = true;
    var add = function (name, value) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      out.appendChild(input);
    };
    add("image_id", info.imageId);
    add("owner_token", info.ownerToken);
    new FormData(form).forEach(function (value, name) {
      if (typeof value === "string") { add(name, value); } // every link option, never the file
    });
    document.body.appendChild(out);
    out.submit();
  }

  fileInput.addEventListener("change", function () {
    if (fileInput.files && fileInput.files[0]) { choose(fileInput.files[0]); }
  });
  cameraInput.addEventListener("change", function () {
    if (cameraInput.files && cameraInput.files[0]) { choose(cameraInput.files[0]); }
  });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (busy) { return; }
    if (!chosen) {
      showError("Choose a photo first.");
      fileInput.focus();
      return;
    }
    var problem = precheck(chosen);
    if (problem) {
      showError(problem);
      return;
    }
    // A link option the page can already tell is wrong (a custom expiry out of bounds): say so
    // before a byte is sent. The form has noValidate, so ask each control ourselves.
    var invalid = options.querySelector("input:invalid, select:invalid");
    if (invalid) {
      invalid.checkValidity(); // fires "invalid": the option shows its own message too
      showError(invalid.validationMessage);
      optionError = true;
      invalid.focus();
      return;
    }
    upload(chosen);
  });

  // Once the option that was wrong is put right, its message above the button goes too.
  var optionError = false;
  var recheck = function () {
    if (optionError && !options.querySelector("input:invalid, select:invalid")) {
      optionError = false;
      clearError();
    }
  };
  options.addEventListener("input", recheck);
  options.addEventListener("change", recheck);

  cancelBtn.addEventListener("click", function () {
    if (xhr) { xhr.abort(); }
  });

  // Drag and drop anywhere on the page.
  var depth = 0;
  var hasFiles = function (e) {
    return e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types || [], "Files") >= 0;
  };
  document.addEventListener("dragenter", function (e) {
    if (!hasFiles(e)) { return; }
    e.preventDefault();
    depth += 1;
    if (!busy) { drop.classList.add("is-over"); }
  });
  document.addEventListener("dragover", function (e) {
    if (!hasFiles(e)) { return; }
    e.preventDefault();
    e.dataTransfer.dropEffect = busy ? "none" : "copy";
  });
  document.addEventListener("dragleave", function (e) {
    if (!hasFiles(e)) { return; }
    depth = Math.max(0, depth - 1);
    if (!depth) { drop.classList.remove("is-over"); }
  });
  document.addEventListener("drop", function (e) {
    if (!hasFiles(e)) { return; }
    e.preventDefault();
    depth = 0;
    drop.classList.remove("is-over");
    if (e.dataTransfer.files && e.dataTransfer.files[0]) { choose(e.dataTransfer.files[0]); }
  });

  // Paste a photo (a screenshot, an image copied from another app).
  document.addEventListener("paste", function (e) {
    var data = e.clipboardData;
    if (busy || !data || !data.files || !data.files.length) { return; }
    var file = Array.prototype.find.call(data.files, function (f) { return /^image\//.test(f.type); }) || data.files[0];
    e.preventDefault();
    choose(file);
  });

  // Coming back from the link page through the back/forward cache: start fresh.
  window.addEventListener("pageshow", function (e) {
    if (e.persisted && busy) { window.location.reload(); }
  });
})();
