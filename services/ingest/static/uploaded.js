// ChatPic "uploaded" page (the plain-form path): say when the safety check is done.
// The page works without this script; the link page offers "Try again" while it is pending.
(function () {
  "use strict";
  var statusEl = document.getElementById("status");
  var detailEl = document.getElementById("status-detail");
  var steps = document.getElementById("steps");
  var imageId = statusEl && statusEl.getAttribute("data-image-id");
  if (!imageId || !window.fetch) { return; }
  var delay = 500;

  function mark(state) {
    var scan = steps.querySelector('[data-step="scan"]');
    scan.classList.remove("held", "failed");
    if (state === "done") {
      scan.classList.add("done");
      scan.removeAttribute("aria-current");
      steps.querySelector('[data-step="link"]').setAttribute("aria-current", "step");
    } else {
      scan.classList.add(state);
    }
  }

  function poll() {
    fetch("/api/v1/images/" + encodeURIComponent(imageId), { cache: "no-store", credentials: "omit" })
      .then(function (r) { return r.json(); })
      .then(function (b) {
        if (b.status === "pending") {
          delay = Math.min(delay * 1.4, 3000);
          setTimeout(poll, delay);
        } else if (b.status === "cleared") {
          mark("done");
          statusEl.textContent = "Ready to share";
          detailEl.textContent = "Pick how the link behaves, then create it.";
        } else if (b.status === "review") {
          mark("held");
          statusEl.textContent = "Held for review";
          detailEl.textContent = "A moderator needs to look at this photo before it can be shared.";
          setTimeout(poll, 10000);
        } else {
          mark("failed");
          statusEl.textContent = "This photo can’t be shared";
          detailEl.textContent = "It did not pass the safety check.";
        }
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
