// The status page of an rtcp DP: it asks api/status every two seconds
// and shows the answer. Names, owners and addresses come from the
// network: they only ever go into the page as text (textContent).
"use strict";

const period = 2000;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "title") e.title = v;
    else e.dataset[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function text(id, v) { document.getElementById(id).textContent = v; }

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
}

function age(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d > 0) return d + "d" + h + "h";
  if (h > 0) return h + "h" + m + "m";
  if (m > 0) return m + "m" + (s % 60) + "s";
  return s + "s";
}

function refusedList(refused) {
  const ul = el("ul", { class: "refused" });
  for (const [reason, n] of Object.entries(refused || {}).sort()) {
    ul.append(el("li", {}, reason + ": " + n));
  }
  return ul;
}

function linksList(links) {
  const ul = el("ul", { class: "links" });
  for (const l of links) {
    const li = el("li", { class: l.draining ? "draining" : "" },
      l.transport + " from " + (l.remote || "?") + ", up " + age(l.age_seconds));
    if (l.draining) li.append(" (draining)");
    ul.append(li);
  }
  return ul;
}

function countCells(c) {
  return [
    el("td", { class: "num c-sessions" }, c.sessions),
    el("td", { class: "num c-sessions-total" }, c.sessions_total),
    el("td", { class: "num c-bytes-to-server", title: c.bytes_to_server + " bytes" }, bytes(c.bytes_to_server)),
    el("td", { class: "num c-bytes-to-client", title: c.bytes_to_client + " bytes" }, bytes(c.bytes_to_client)),
    el("td", { class: "c-refused" }, refusedList(c.refused)),
  ];
}

function render(st) {
  const state = document.getElementById("state");
  state.textContent = st.accepting ? "accepting" : "closing";
  state.className = "state " + (st.accepting ? "ok" : "bad");
  text("updated", "as of " + new Date(st.time).toLocaleTimeString());
  text("s-started", new Date(st.started).toLocaleString() + " (" + age((Date.parse(st.time) - Date.parse(st.started)) / 1000) + ")");
  text("s-servers", st.servers);
  text("s-links", st.links);
  text("s-connections", st.connections);
  text("s-sessions", st.sessions);
  text("s-sessions-total", st.sessions_total);
  text("s-bytes-to-servers", bytes(st.bytes_to_servers));
  text("s-bytes-to-clients", bytes(st.bytes_to_clients));
  text("s-direct", st.direct_brokered + " brokered: " + st.direct_moved + " moved, " + st.direct_partly + " one way only, " + st.direct_relayed + " ended relayed; " + bytes(st.direct_bytes) + " direct");

  const rows = [];
  for (const n of st.names) {
    const tr = el("tr", { name: n.name },
      el("td", { class: "c-name" }, n.name),
      el("td", { class: "c-owner" }, n.owner || "-"),
      el("td", { class: "c-links" }, linksList(n.links)));
    tr.append(...countCells(n));
    if (!n.counted) tr.title = "counted with the other names";
    rows.push(tr);
  }
  const other = el("tr", { class: "other" },
    el("td", { class: "c-name" }, "other names"),
    el("td", {}, ""), el("td", {}, ""));
  other.append(...countCells(st.other));
  rows.push(other);
  document.querySelector("#names tbody").replaceChildren(...rows);
  text("names-note", st.max_name_stats > 0
    ? "Names past the first " + st.max_name_stats + " (and names not served here) are counted together as other names."
    : "No name is counted on its own (-max-name-stats is negative): all are counted as other names.");

  const reasons = Object.entries(st.refused || {}).filter(([, n]) => n > 0).sort();
  document.querySelector("#refusals tbody").replaceChildren(...reasons.map(([reason, n]) =>
    el("tr", { reason: reason }, el("td", {}, reason), el("td", { class: "num" }, n))));
  document.getElementById("refusals-none").hidden = reasons.length > 0;
}

async function refresh() {
  const error = document.getElementById("error");
  const start = performance.now();
  try {
    const resp = await fetch("api/status", { cache: "no-store" });
    if (!resp.ok) throw new Error(resp.status + " " + (await resp.text()).trim());
    render(await resp.json());
    error.hidden = true;
  } catch (e) {
    error.textContent = "Cannot reach the DP's status (" + e.message + "); what is shown is older.";
    error.hidden = false;
    const state = document.getElementById("state");
    state.textContent = "unreachable";
    state.className = "state bad";
  }
  // A DP with many names makes a large answer: ask no more often than
  // ten times what the last answer took to fetch and show.
  setTimeout(refresh, Math.max(period, 10 * (performance.now() - start)));
}

refresh();
