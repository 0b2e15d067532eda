// knockoff review console: keyboard triage. Everything also works without this script (links
// and buttons); it only maps keys to them.
//   queue:   j / k move the highlighted row, Enter opens it
//   verdict: j / k next / previous verdict, c counterfeit, g genuine, n not our product
(function () {
  "use strict";
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
