/* Attest: live ingestion progress on the collection page. Polls the collection's status URL
   while documents are pending and updates the progress bar, the counts and each row's state.
   No dependencies; a static file (the CSP allows no inline script). Without JavaScript the
   page refreshes itself (a <noscript> meta refresh) while work is pending. */
(function () {
  "use strict";
  var INTERVAL_MS = 2000;

  function text(el, value) { if (el) el.textContent = value; }

  function updateRow(row, doc) {
    if (row.dataset.status === doc.status) return;
    row.dataset.status = doc.status;
    var badge = row.querySelector(".status");
    badge.className = "status status-" + doc.status;
    badge.textContent = doc.label;
    text(row.querySelector(".reason"), doc.message || "");
    text(row.querySelector(".pages"), doc.pages === null ? "" : String(doc.pages));
    text(row.querySelector(".chunks"), String(doc.chunks));
    row.querySelectorAll("button[data-show-for]").forEach(function (button) {
      button.hidden = button.dataset.showFor.split(" ").indexOf(doc.status) === -1;
    });
  }

  function apply(panel, data) {
    var bar = document.getElementById("progress-bar");
    bar.value = data.percent;
    bar.textContent = data.percent + "%";
    text(document.getElementById("progress-text"),
      data.done + " of " + data.total + " finished (" + data.percent + "%)");
    panel.querySelectorAll("[data-count]").forEach(function (el) {
      el.textContent = String(data.counts[el.dataset.count] || 0);
    });
    var known = 0;
    var rows = {};
    document.querySelectorAll("#documents tr[data-id]").forEach(function (row) {
      rows[row.dataset.id] = row;
    });
    data.documents.forEach(function (doc) {
      var row = rows[String(doc.id)];
      if (row) { known += 1; updateRow(row, doc); }
    });
    var countsKnown = Object.keys(data.counts).every(function (status) {
      return panel.querySelector('[data-count="' + status + '"]');
    });
    document.getElementById("pending-note").hidden = data.pending === 0;
    panel.dataset.pending = String(data.pending);
    // Documents added elsewhere (another upload, the command line): show them by reloading.
    if (known !== data.documents.length || !countsKnown) window.location.reload();
    return data.pending > 0;
  }

  function poll(panel) {
    fetch(panel.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) { if (apply(panel, data)) schedule(panel); })
      .catch(function () { schedule(panel, INTERVAL_MS * 3); });
  }

  function schedule(panel, delay) { window.setTimeout(function () { poll(panel); }, delay || INTERVAL_MS); }

  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.getElementById("ingest-progress");
    if (panel && panel.dataset.pending !== "0") schedule(panel);
  });
})();
