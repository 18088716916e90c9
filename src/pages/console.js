// queuegate's operators' console (/admin/ on the admin listener): every call carries the admin
// token the operator typed, kept for this tab only.
"use strict";
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
let token = sessionStorage.getItem("qg:admin"), concerts = new Map(), timer = null;

// A refused If-Match: someone else changed the concert since this page showed it.
class Stale extends Error {}

async function api(method, path, body, headers = {}) {
  const r = await fetch(`/admin/v1${path}`, {
    method, cache: "no-store",
    headers: Object.assign({ Authorization: `Bearer ${token}` }, body ? { "Content-Type": "application/json" } : {}, headers),
    body: body ? JSON.stringify(body) : undefined,
  });
  if (r.status === 401) { signOut(); throw new Error("The admin token was refused."); }
  const out = r.status === 204 ? {} : await r.json();
  if (r.status === 412) throw new Stale(out.detail);
  if (!r.ok) throw new Error(out.detail || `HTTP ${r.status}`);
  $("error").textContent = "";
  return out;
}
const report = (e) => { $("error").textContent = e.message; };

function signOut() {
  token = null;
  sessionStorage.removeItem("qg:admin");
  clearTimeout(timer);
  $("board").hidden = true;
  $("login").hidden = false;
}

function el(tag, props = {}, ...kids) {
  const { dataset, ...rest } = props;
  const e = Object.assign(document.createElement(tag), rest);
  Object.assign(e.dataset, dataset || {});
  e.append(...kids);
  return e;
}

// Changes the fields `patch` names and nothing else (a JSON Merge Patch), over the copy the
// operator saw: `etag` is the ETag of what the page showed when the operator began (the last
// refresh's, or the one taken when the confirmation or the rate box was opened). If someone
// else changed the concert since, nothing is saved: the page says so and shows it afresh.
async function change(id, patch, etag) {
  const headers = { "Content-Type": "application/merge-patch+json", "If-Match": etag || concerts.get(id).etag };
  try {
    await api("PATCH", `/concerts/${enc(id)}`, patch, headers);
    $("stale").textContent = "";
  } catch (e) {
    if (!(e instanceof Stale)) throw e;
    $("stale").textContent = `${id} was changed by someone else since this page showed it, so your change was not saved. ` +
      "The page now shows it as it is: check it and try again.";
  }
  await refresh();
}

// One row per concert, made once; each refresh only rewrites its cells' text, so what an
// operator is typing survives.
function row(id) {
  const cell = (k, cls) => el("td", { className: cls || "", dataset: { k } });
  const rate = el("input", { className: "rate", type: "number", min: 0, max: 100000, ariaLabel: `admissions per second for ${id}` });
  const count = el("input", { className: "count", type: "number", min: 1, max: 1000, value: 10, ariaLabel: `fans to admit now in ${id}` });
  const act = (label, f) => el("button", { type: "button", textContent: label, dataset: { act: label }, onclick: () => f().catch(report) });
  // Sold out is not undone by a slip of the mouse: every waiting fan is told at once.
  const sure = el("span", { className: "sure", hidden: true },
    `Every fan waiting in ${id} is told it is sold out (places are kept). `,
    Object.assign(act("Yes, sold out", () => { sure.hidden = true; return change(id, { state: "soldout" }, sure.dataset.etag); }), { className: "danger" }),
    act("Cancel", async () => { sure.hidden = true; }));
  // Queue everyone (the emergency switch of a gate kept on in standby): every visitor without a
  // session goes to the room from the next request; asked twice too.
  const qsure = el("span", { className: "sure", hidden: true },
    `Every visitor of ${id}'s site without a session goes to the room from the next request (live sessions go on). `,
    Object.assign(act("Yes, queue everyone", () => { qsure.hidden = true; return change(id, { queueAll: true }, qsure.dataset.etag); }), { className: "danger" }),
    act("Cancel", async () => { qsure.hidden = true; }));
  const tr = el("tr", { dataset: { concert: id } },
    el("th", { scope: "row" }, el("span", { className: "cid" }), el("br"), el("small", { className: "muted cname" })),
    cell("state"), cell("waiting", "n"), cell("admitted", "n"), cell("active", "n"), cell("sessions", "n"), cell("admitPerSecond", "n"), cell("head"),
    el("td", {},
      el("div", { className: "acts" }, act("Open", () => change(id, { state: "open" })),
        act("Pause", () => change(id, { state: "paused" })), act("Close", () => change(id, { state: "closed" })),
        Object.assign(act("Sold out…", async () => { sure.dataset.etag = concerts.get(id).etag; sure.hidden = false; }), { className: "danger" })),
      sure,
      el("div", { className: "acts" },
        Object.assign(act("Queue all…", async () => { qsure.dataset.etag = concerts.get(id).etag; qsure.hidden = false; }), { className: "danger" }),
        act("Stop queuing all", () => change(id, { queueAll: false }))),
      qsure,
      el("div", { className: "acts" }, rate, act("Set rate", () => {
        const etag = rate.dataset.etag;
        delete rate.dataset.etag;
        return change(id, { admitPerSecond: Number(rate.value) }, etag);
      })),
      el("div", { className: "acts" }, count, act("Admit", async () => {
        const r = await api("POST", `/concerts/${enc(id)}/admit`, { count: Number(count.value) });
        $("found").textContent = `Admitted ${r.admitted.length} in ${id}.`;
        await refresh();
      }))));
  // The rate being typed was read from the copy shown when the box was entered.
  rate.addEventListener("focus", () => { rate.dataset.etag = concerts.get(id).etag; });
  tr.querySelector(".cid").textContent = id;
  return tr;
}

async function refresh() {
  clearTimeout(timer);
  try {
    const { concerts: list } = await api("GET", "/concerts");
    concerts = new Map(list.map((c) => [c.concertId, c]));
    const heads = await Promise.all(list.slice(0, 50).map((c) =>
      api("GET", `/concerts/${enc(c.concertId)}/queue?limit=3`).then((p) => p.entries.map((e) => `#${e.position} ${e.userId}`), () => [])));
    const rows = $("rows");
    for (const tr of [...rows.children]) if (!concerts.has(tr.dataset.concert)) tr.remove();
    list.forEach((c, i) => {
      let tr = rows.querySelector(`tr[data-concert="${CSS.escape(c.concertId)}"]`);
      if (!tr) rows.append((tr = row(c.concertId)));
      tr.querySelector(".cname").textContent = c.name || "";
      for (const td of tr.querySelectorAll("td[data-k]")) {
        const k = td.dataset.k;
        if (k === "head") { td.replaceChildren(...(heads[i] || ["—"]).map((h) => el("div", { textContent: h }))); continue; }
        td.textContent = k === "state" && c.opensAt && Date.parse(c.opensAt) > Date.now() ? `${c.state} (opens ${new Date(c.opensAt).toLocaleString()})`
          : typeof c[k] === "number" ? c[k].toLocaleString("en") : c[k];
        // How visitors of the gated site get in: standby lets them straight in while there is room.
        if (k === "state" && c.queueingMethod === "standby") td.append(el("div", { className: "muted", textContent: "standby" }));
        if (k === "state" && c.queueAll) td.append(el("div", { className: "muted", textContent: "queuing everyone" }));
        // With lanes, each lane's own count under the concert's.
        if ((k === "waiting" || k === "admitted") && (c.laneCounts || []).length > 1) {
          td.append(...c.laneCounts.map((l) => el("div", { className: "muted", textContent: `${l.name} ${l[k].toLocaleString("en")}` +
            (k === "waiting" && l.codes !== undefined ? ` · codes ${l.codesUsed.toLocaleString("en")}/${l.codes.toLocaleString("en")} used` : "") })));
        }
      }
      // The state it is in cannot be chosen again; the rate box shows the rate unless being edited.
      for (const [act, state] of [["Open", "open"], ["Pause", "paused"], ["Close", "closed"], ["Sold out…", "soldout"]]) {
        tr.querySelector(`button[data-act="${act}"]`).disabled = c.state === state;
      }
      tr.querySelector('button[data-act="Queue all…"]').disabled = !!c.queueAll;
      tr.querySelector('button[data-act="Stop queuing all"]').hidden = !c.queueAll;
      const rate = tr.querySelector("input.rate");
      if (document.activeElement !== rate) rate.value = c.admitPerSecond;
    });
    $("empty").hidden = list.length > 0;
    if ($("sc").value && concerts.has($("sc").value)) await showSessions();
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) { report(e); }
  if (token) timer = setTimeout(refresh, 1000);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value;
  sessionStorage.setItem("qg:admin", token);
  start();
});

$("lookup").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const f = await api("GET", `/concerts/${enc($("lc").value)}/queue/${enc($("lu").value)}`);
    $("found").textContent = `${f.userId}: ${f.status}${f.position ? `, position ${f.position}` : ""} (joined ${f.joinedAt})`;
    $("remove").disabled = f.status !== "waiting";
  } catch (e) { $("found").textContent = e.message; $("remove").disabled = true; }
});

$("remove").addEventListener("click", async () => {
  try {
    await api("DELETE", `/concerts/${enc($("lc").value)}/queue/${enc($("lu").value)}`);
    $("found").textContent = `${$("lu").value} was removed from ${$("lc").value}.`;
    $("remove").disabled = true;
    await refresh();
  } catch (e) { report(e); }
});

// Gate sessions of one concert: the list, ending one, and the emergency stop (two steps).
// One row per session, made once and kept while the session lives: each refresh (every second)
// rewrites the times only, so an End button being pressed or holding the focus survives it.
const srows = new Map();
let sfor = "";
async function showSessions() {
  const id = $("sc").value;
  const r = await api("GET", `/concerts/${enc(id)}/sessions?limit=100`);
  $("scount").textContent = `${r.total.toLocaleString("en")} live session${r.total === 1 ? "" : "s"} in ${id}`;
  const time = (s) => new Date(s).toLocaleTimeString();
  const body = $("srows");
  if (sfor !== id) { srows.clear(); body.replaceChildren(); sfor = id; }
  const live = new Set(r.sessions.map((s) => s.userId));
  for (const [user, tr] of srows) if (!live.has(user)) { tr.remove(); srows.delete(user); }
  r.sessions.forEach((s, i) => {
    let tr = srows.get(s.userId);
    if (!tr) {
      tr = el("tr", { dataset: { user: s.userId } }, el("td", { textContent: s.userId }), el("td"), el("td"), el("td"),
        el("td", {}, el("button", { type: "button", textContent: "End", dataset: { act: "end" }, onclick: () =>
          api("DELETE", `/concerts/${enc(id)}/sessions/${enc(s.userId)}`)
            .then(() => { $("sdone").textContent = `${s.userId}'s session in ${id} ended.`; return showSessions(); }).catch(report) })));
      srows.set(s.userId, tr);
    }
    [s.startedAt, s.lastSeenAt, s.expiresAt].forEach((t, k) => { tr.cells[k + 1].textContent = time(t); });
    if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] || null);
  });
  $("sessions").hidden = false;
}

$("sform").addEventListener("submit", (ev) => { ev.preventDefault(); showSessions().catch(report); });
$("revoke").addEventListener("click", () => { $("sure").hidden = false; $("revoke").disabled = true; });
$("cancel").addEventListener("click", () => { $("sure").hidden = true; $("revoke").disabled = false; });
$("confirm").addEventListener("click", async () => {
  $("sure").hidden = true; $("revoke").disabled = false;
  try {
    const id = $("sc").value;
    const r = await api("POST", `/concerts/${enc(id)}/sessions/revoke`);
    $("sdone").textContent = `Revoked in ${id}: ${r.sessionsEnded} sessions ended, ${r.tokensRevoked} admission tokens revoked.`;
    await showSessions();
  } catch (e) { report(e); }
});

// A lane's codes from a CSV file: the first column of each row (a header row "code" is
// skipped), sent 10,000 at a time with the progress shown.
const CODES_PER_CALL = 10000;
function codesOf(text) {
  const codes = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const code = line.split(",")[0].trim().replace(/^"(.*)"$/, "$1").trim();
    if (!code || (i === 0 && /^code$/i.test(code))) return;
    if (!/^[!-~]{1,64}$/.test(code)) throw new Error(`Line ${i + 1}: a code is 1 to 64 visible ASCII characters (${JSON.stringify(code.slice(0, 70))}).`);
    codes.push(code);
  });
  return codes;
}

$("cform").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = $("cc").value, lane = $("cl").value, file = $("cfile").files[0];
  try {
    const codes = codesOf(await file.text());
    if (!codes.length) throw new Error("The file holds no codes.");
    let added = 0, r = null;
    for (let i = 0; i < codes.length; i += CODES_PER_CALL) {
      $("cdone").textContent = `Uploading ${i.toLocaleString("en")} of ${codes.length.toLocaleString("en")} codes…`;
      r = await api("POST", `/concerts/${enc(id)}/lanes/${enc(lane)}/codes`, { codes: codes.slice(i, i + CODES_PER_CALL) });
      added += r.added;
    }
    $("cdone").textContent = `${added.toLocaleString("en")} new codes in ${id}/${lane} (of ${codes.length.toLocaleString("en")} in the file); ` +
      `the lane has ${r.total.toLocaleString("en")}, ${r.used.toLocaleString("en")} used.`;
    await refresh();
  } catch (e) { $("cdone").textContent = ""; report(e); }
});

// The sale's report as three small charts (SVG drawn here: the console loads nothing from
// elsewhere), the webhooks and their latest deliveries.
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function chart(id, points, bars) {
  const box = $(id), W = 300, H = 120, pad = 18;
  const max = Math.max(1, ...points.map((p) => p.v));
  const x = (i) => pad + (points.length < 2 ? (W - 2 * pad) / 2 : (i * (W - 2 * pad)) / (points.length - 1));
  const y = (v) => H - pad - (v * (H - 2 * pad)) / max;
  const kids = [svg("title", {}, `${box.getAttribute("aria-label")}: ${points.map((p) => `${p.t} ${p.v}`).join(", ") || "nothing yet"}`),
    svg("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, class: "axis" }),
    svg("text", { x: 2, y: pad - 4, class: "label" }, max.toLocaleString("en"))];
  if (bars) {
    const w = Math.max(2, (W - 2 * pad) / Math.max(points.length, 1) - 2);
    points.forEach((p, i) => kids.push(svg("rect", { x: x(i) - w / 2, y: y(p.v), width: w, height: H - pad - y(p.v), class: "bar" })));
  } else if (points.length) {
    kids.push(svg("polyline", { points: points.map((p, i) => `${x(i)},${y(p.v)}`).join(" "), class: "line" }));
    if (points.length <= 120) points.forEach((p, i) => kids.push(svg("circle", { cx: x(i), cy: y(p.v), r: 2, class: "dot" })));
  }
  if (points.length) kids.push(svg("text", { x: pad, y: H - 2, class: "label" }, points[0].t), svg("text", { x: W - pad, y: H - 2, class: "label end" }, points[points.length - 1].t));
  box.replaceChildren(...kids);
  box.dataset.points = points.length;
}
async function showReport() {
  const id = $("rc").value;
  const [r, d, a] = await Promise.all([api("GET", `/concerts/${enc(id)}/report`), api("GET", `/concerts/${enc(id)}/webhooks/deliveries`),
    api("GET", `/concerts/${enc(id)}/audit?limit=50`)]);
  const order = ["placed", "admitted", "session.started", "session.ended", "completed", "expired", "abandoned", "removed"];
  $("rcounts").textContent = order.map((k) => `${k} ${(r.counts[k] || 0).toLocaleString("en")}`).join(" · ");
  const w = r.waitMs, s = (ms) => (ms === null || ms === undefined ? "—" : `${(ms / 1000).toFixed(1)} s`);
  // Percentiles come from the report's histogram: never under the exact ones, by under 1/8 over.
  $("rwaits").textContent = `Wait from placed to admitted (${w.count.toLocaleString("en")} fans): p50 ${s(w.p50)}, p90 ${s(w.p90)}, p99 ${s(w.p99)}, max ${s(w.max)}, mean ${s(w.mean)}`;
  const hhmm = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  chart("chart-joins", r.joinsPerMinute.map((p) => ({ t: hhmm(p.minute), v: p.count })), true);
  chart("chart-admissions", r.admissionsPerMinute.map((p) => ({ t: hhmm(p.minute), v: p.count })), true);
  chart("chart-length", r.queueLength.map((p) => ({ t: hhmm(p.minute), v: p.length })), false);
  // The series keep their last day; earlier minutes are summed in beforeMinutes.
  const before = r.beforeMinutes || { joins: 0, admissions: 0 };
  if (before.joins || before.admissions) $("rcounts").textContent += ` · before the charts: ${before.joins.toLocaleString("en")} placed, ${before.admissions.toLocaleString("en")} admitted`;
  // Pending, what was dropped, and a suspended endpoint with the button that resumes it.
  const standing = (h) => {
    const dropped = h.dropped.full + h.dropped.suspended;
    const text = `${h.pending.toLocaleString("en")}${dropped ? ` (${dropped.toLocaleString("en")} dropped)` : ""}`;
    if (!h.suspended) return el("td", { textContent: text, dataset: { k: "pending" } });
    return el("td", { dataset: { k: "pending", suspended: "" } }, `${text} · suspended since ${new Date(h.suspendedAt).toLocaleTimeString()} `,
      el("button", { type: "button", textContent: "Resume", dataset: { act: "resume" }, onclick: () =>
        api("POST", `/concerts/${enc(id)}/webhooks/${enc(h.id)}/resume`).then(showReport).catch(report) }));
  };
  $("hrows").replaceChildren(...d.webhooks.map((h) => el("tr", { dataset: { webhook: h.id } }, el("td", { textContent: h.id }),
    el("td", { textContent: h.url }), el("td", { textContent: h.secret }), standing(h))));
  $("drows").replaceChildren(...d.deliveries.slice(0, 20).map((x) => el("tr", {}, el("td", { textContent: new Date(x.at).toLocaleTimeString() }),
    el("td", { textContent: x.webhookId }), el("td", { textContent: x.eventId }), el("td", { textContent: x.attempt }),
    el("td", { textContent: `${x.outcome}${x.class ? ` (${x.class})` : ""}${x.error ? ` (${x.error})` : ""}` }))));
  // Who changed what: the audit list, newest first (secrets were redacted when recorded).
  const changed = (x) => {
    const parts = [];
    if (x.change !== null && x.change !== undefined) parts.push(JSON.stringify(x.change));
    if (x.result) parts.push(`→ ${JSON.stringify(x.result)}`);
    const text = parts.join(" ");
    return text.length > 200 ? `${text.slice(0, 199)}…` : text;
  };
  $("arows").replaceChildren(...a.actions.map((x) => el("tr", { dataset: { event: x.eventId } },
    el("td", { textContent: new Date(x.at).toLocaleTimeString() }), el("td", { textContent: x.tokenName }),
    el("td", { textContent: x.role }), el("td", { textContent: `${x.method} ${x.path}` }), el("td", { className: "change", textContent: changed(x) }))));
  $("aempty").hidden = a.actions.length > 0;
  $("report").hidden = false;
}
$("rform").addEventListener("submit", (ev) => { ev.preventDefault(); showReport().catch(report); });

function start() {
  $("login").hidden = true;
  $("board").hidden = false;
  refresh();
}

if (token) start(); else $("login").hidden = false;
