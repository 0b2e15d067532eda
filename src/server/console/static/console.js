// knockoff review console: keyboard triage. Everything also works without this script (links
// and buttons); it only maps keys to them.
//   queue:   j / k move the highlighted row, Enter opens it
//   verdict: j / k next / previous verdict, c counterfeit, g genuine, n not our product
// and, on a verdict page, joins each verified local feature circled on the listing photo to the
// one circled on the reference photo with a line (the circles are drawn without it).
(function () {
  "use strict";
  function joinFeatures() {
    var links = document.getElementById("feature-links");
    var box = document.getElementById("photos");
    if (!links || !box) { return; }
    var at = box.getBoundingClientRect(), ns = "http://www.w3.org/2000/svg";
    var centre = function (c) {
      var r = c.getBoundingClientRect();
      return [r.left + r.width / 2 - at.left, r.top + r.height / 2 - at.top];
    };
    while (links.firstChild) { links.removeChild(links.firstChild); }
    document.querySelectorAll("#listing-features circle").forEach(function (c) {
      var twin = document.querySelector("#reference-features circle[data-i='" + c.dataset.i + "']");
      if (!twin) { return; }
      var a = centre(c), b = centre(twin), line = document.createElementNS(ns, "line");
      line.setAttribute("x1", a[0]); line.setAttribute("y1", a[1]);
      line.setAttribute("x2", b[0]); line.setAttribute("y2", b[1]);
      line.setAttribute("stroke", c.getAttribute("stroke"));
      links.appendChild(line);
    });
  }
  joinFeatures();
  window.addEventListener("resize", joinFeatures);
  document.querySelectorAll(".photos img").forEach(function (i) {
    i.addEventListener("load", joinFeatures);
  });
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-row]")); }
  function moveRow(step) {
    var all = rows();
    if (!all.length) { return; }
    var at = all.findIndex(function (r) { return r.classList.contains("current"); });
    var to = Math.max(0, Math.min(all.length - 1, (at < 0 ? 0 : at + step)));
    all.forEach(function (r) { r.classList.remove("current"); });
    all[to].classList.add("current");
    all[to].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) { return; }
    var t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) { return; }
    var key = e.key;
    if (rows().length) {
      if (key === "j" || key === "k") { e.preventDefault(); moveRow(key === "j" ? 1 : -1); return; }
      if (key === "Enter") {
        var cur = document.querySelector("tr[data-row].current a");
        if (cur) { e.preventDefault(); window.location.href = cur.href; }
        return;
      }
    }
    var link = document.querySelector("a[data-key='" + key + "']");
    if (link) { e.preventDefault(); window.location.href = link.href; return; }
    var button = document.querySelector("button[data-key='" + key + "']");
    if (button && !button.disabled) {
      e.preventDefault();
      document.querySelectorAll("button[data-key]").forEach(function (b) { b.disabled = true; });
      // a disabled button is not submitted: send its value in a hidden field instead
      var form = button.form, field = document.createElement("input");
      field.type = "hidden"; field.name = button.name; field.value = button.value;
      form.appendChild(field);
      form.submit();
    }
  });
})();
