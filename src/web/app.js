// Sportello: small comforts only; every page works without this file.
// "/" focuses the search box; forms that change a ticket ask before marking a duplicate.
document.addEventListener("keydown", function (e) {
  if (e.key === "/" && !/^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName)) {
    var q = document.getElementById("q");
    if (q) { e.preventDefault(); q.focus(); }
  }
});
document.addEventListener("submit", function (e) {
  var action = e.target.querySelector("input[name=action]");
  if (action && action.value === "duplicate" && document.documentElement.lang) {
    var msg = document.documentElement.lang === "en"
      ? "Close this request as a duplicate?" : "Chiudere questa richiesta come duplicato?";
    if (!window.confirm(msg)) { e.preventDefault(); }
  }
});
