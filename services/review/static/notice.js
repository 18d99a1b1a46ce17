// A notice a redirect asked for (/?done=clear, /banks?bank=b&done=added&n=1, ...) is shown
// once: the page names the query parameters it came from (data-once on #notice) and they are
// dropped from the address at once, so a reload or a bookmark shows the page without it.
(function () {
  "use strict";
  var notice = document.getElementById("notice");
  var once = notice ? (notice.getAttribute("data-once") || "").split(/\s+/) : [];
  if (!once.length || !window.history || !window.history.replaceState) return;
  var url = new URL(window.location.href);
  var dropped = false;
  once.forEach(function (name) {
    if (name && url.searchParams.has(name)) {
      url.searchParams.delete(name);
      dropped = true;
    }
  });
  if (!dropped) return;
  var query = url.searchParams.toString();
  window.history.replaceState(window.history.state, "", url.pathname + (query ? "?" + query : "") + url.hash);
})();
