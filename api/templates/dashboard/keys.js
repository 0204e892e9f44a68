// Keyboard navigation of the dashboard's tables (progressive: every row is also a plain link).
// In a table marked data-nav, j / k move to the next / previous row, Enter (or o) opens the row's link.
// Keys typed into a form field are left alone.
(function () {
  "use strict";
  var current = -1;
  function rows() {
    var table = document.querySelector("table[data-nav]");
    return table ? Array.prototype.slice.call(table.querySelectorAll("tr[data-href]")) : [];
  }
  function select(index) {
    var all = rows();
    if (!all.length) { return; }
    if (current >= 0 && all[current]) { all[current].classList.remove("current"); }
    current = Math.max(0, Math.min(all.length - 1, index));
    all[current].classList.add("current");
    var link = all[current].querySelector("a");
    if (link) { link.focus({preventScroll: true}); }
    all[current].scrollIntoView({block: "nearest"});
  }
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var tag = target && target.tagName;
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") { return; }
    if (event.key === "j") { select(current + 1); event.preventDefault(); }
    else if (event.key === "k") { select(current - 1); event.preventDefault(); }
    else if ((event.key === "o" || event.key === "Enter") && current >= 0) {
      var row = rows()[current];
      if (row && tag !== "A") { window.location.href = row.getAttribute("data-href"); event.preventDefault(); }
    }
  });
})();
