(function () {
  "use strict";
  var refreshMs = Number(document.body.dataset.refreshMs) || 2000;
  // Built from origin + path: a URL with user:password@ in it would make fetch() refuse.
  var stateUrl = location.origin + location.pathname.replace(/[^\/]*$/, "") + "state.json";

  function text(id, value) { document.getElementById(id).textContent = value; }

  function cell(row, content, className) {
    var td = row.insertCell();
    if (className) { td.className = className; }
    if (content instanceof Node) { td.appendChild(content); } else { td.textContent = content; }
    return td;
  }

  function span(className, content) {
    var el = document.createElement("span");
    el.className = className;
    el.textContent = content;
    return el;
  }

  function render(data) {
    document.body.classList.remove("stale");
    var status = document.getElementById("status");
    status.className = data.status === "ok" ? "status" : "status error";
    status.textContent = data.status === "ok" ? "engine running" : "engine: " + data.error;
    text("online-count", data.online);
    text("offline-count", data.offline);
    text("last-round", data.lastRoundAge || "never");
    text("last-sync", data.lastMasterSyncAge || "never");
    text("records-refused", data.recordsRefused);
    var body = document.createElement("tbody");
    data.members.forEach(function (m) {
      var row = body.insertRow();
      row.dataset.baseUrl = m.baseUrl;
      row.dataset.state = m.state;
      if (m.self) { row.className = "self"; }
      cell(row, m.baseUrl, "url");
      cell(row, span("pill " + m.state, m.state));
      cell(row, m.monitor ? span("badge", "monitor") : "member");
      cell(row, m.age);
    });
    var table = document.getElementById("members");
    table.replaceChild(body, table.tBodies[0]);
    text("updated", "updated " + new Date().toLocaleTimeString());
  }

  function refresh() {
    fetch(stateUrl, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(render)
      .catch(function (err) {
        document.body.classList.add("stale");
        var status = document.getElementById("status");
        status.className = "status error";
        status.textContent = "cannot reach the node (" + err.message + "); retrying";
      })
      .finally(function () { setTimeout(refresh, refreshMs); });
  }

  refresh();
})();
