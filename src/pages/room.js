// queuegate's waiting room (/c/{concertId}) and list of rooms (/); docs/explain-design.md.
"use strict";
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const min = (s) => Math.max(1, Math.round(s / 60));
const T = {
  en: {
    other: "한국어", rooms: "Waiting rooms", noRooms: "No concert is taking fans right now.", concertId: "Concert",
    go: "Go to the waiting room", fanId: "Your fan id", join: "Join the queue", continue: "Continue to booking",
    signIn: "Open this waiting room from the booking site's link: it tells us who you are.",
    reconnecting: "Connection lost — reconnecting… You keep your place.",
    keep: "Keep this page open. There is no need to refresh: you keep your place even if you do.",
    room: "Waiting room", opensIn: "Sales open in", open: "Sales are open.", scheduled: "Sales have not opened yet.",
    ended: "This sale has ended.", paused: "The queue is paused for now; you keep your place.",
    closed: "This queue is closed.", soldout: "Sold out.", maintenance: "The queue is under maintenance; please come back later.",
    opensAt: (d) => `Opens ${d}`, noConcert: "There is no such waiting room.",
    pending: "You are in! Finding your place in line…", waiting: "You are in line",
    prequeue: "You are in the pre-queue", prequeueNote: "When sales open, everyone in the pre-queue gets a place in a random order, ahead of those who come later.",
    admitted: "It's your turn!", expired: "Your turn has passed.", removed: "You were removed from the queue.",
    completed: "You have completed your booking.", rejoin: "Join again",
    soldoutNote: "All tickets are sold. If tickets come back, this page takes you back to your place.",
    ahead: (n) => n === 0 ? "You are next." : n === 1 ? "1 person ahead of you" : `${n.toLocaleString("en")} people ahead of you`,
    of: (n) => `of ${n.toLocaleString("en")} waiting`,
    eta: (a, b) => b <= 1 ? "Estimated wait: under a minute" : `Estimated wait: ${a}–${b} minutes`,
    etaNone: "Estimated wait: we will know once the line moves.",
    abandon: (m) => `Keep this page open: fans who leave it for more than ${m} minute${m === 1 ? "" : "s"} lose their place.`,
    redirecting: "Taking you to the booking site…", noRedirect: "Go back to the booking site to continue.",
    say: (s, p) => p ? `${s}. Position ${p}.` : sentence(s), you: (u) => `Your place: ${u}`,
    busy: (s) => `Busy right now — trying again in ${s} s. Keep this page open.`, checking: "Checking your browser…", failed: "Something went wrong",
    gateEnded: { session: "Your booking session has ended.", spent: "This admission link has already been used.",
      revoked: "The organiser has closed the booking site for now.", token: "This admission link is not valid.",
      browser: "This admission link works only in the browser that waited in the queue for it, so it was not used here." },
    continueHere: "You were let through in this browser: continue to the booking site with the button.",
    lane: (n) => `Lane: ${n}`, inLane: (n) => `in lane ${n}`, code: "Your presale code", noLane: (n) => `This concert has no lane ${n}.`,
    refused: { "code-required": "This lane needs a presale code.", "code-refused": "This code does not open this lane: it is not one of its codes, or someone else has used it. Check it and try again.",
      "claim-missing": "Your account is not in this lane's group." },
  },
  ko: {
    other: "English", rooms: "대기실", noRooms: "지금 대기열을 받는 공연이 없습니다.", concertId: "공연",
    go: "대기실로 가기", fanId: "팬 ID", join: "대기열 입장", continue: "예매하러 가기",
    signIn: "예매 사이트의 링크로 이 대기실을 열어 주세요. 그 링크가 누구인지 알려 줍니다.",
    reconnecting: "연결이 끊겼습니다 — 다시 연결하는 중… 순서는 그대로 유지됩니다.",
    keep: "이 페이지를 열어 두세요. 새로고침할 필요가 없으며, 새로고침해도 순서는 유지됩니다.",
    room: "대기실", opensIn: "판매 시작까지", open: "판매 중입니다.", scheduled: "아직 판매가 시작되지 않았습니다.",
    ended: "판매가 종료되었습니다.", paused: "대기열이 잠시 멈췄습니다. 순서는 유지됩니다.",
    closed: "대기열이 닫혔습니다.", soldout: "매진되었습니다.", maintenance: "대기열 점검 중입니다. 잠시 후 다시 와 주세요.",
    opensAt: (d) => `${d} 오픈`, noConcert: "해당 대기실이 없습니다.",
    pending: "입장했습니다! 순서를 확인하는 중…", waiting: "대기 중입니다",
    prequeue: "사전 대기열에 있습니다", prequeueNote: "판매가 시작되면 사전 대기열의 모든 분이 무작위 순서로, 나중에 온 분들보다 앞에 배치됩니다.",
    admitted: "고객님 차례입니다!", expired: "차례가 지났습니다.", removed: "대기열에서 제외되었습니다.",
    completed: "예매를 마쳤습니다.", rejoin: "다시 입장",
    soldoutNote: "모든 티켓이 판매되었습니다. 취소표가 나오면 이 페이지가 원래 순서로 돌려 드립니다.",
    ahead: (n) => n === 0 ? "다음 차례입니다." : `내 앞에 ${n.toLocaleString("ko")}명`,
    of: (n) => `대기 ${n.toLocaleString("ko")}명 중`,
    eta: (a, b) => b <= 1 ? "예상 대기 시간: 1분 이내" : `예상 대기 시간: ${a}~${b}분`,
    etaNone: "예상 대기 시간: 대기열이 움직이면 알려 드립니다.",
    abandon: (m) => `이 페이지를 열어 두세요. ${m}분 넘게 떠나 있으면 순서를 잃습니다.`,
    redirecting: "예매 사이트로 이동합니다…", noRedirect: "예매 사이트로 돌아가 계속하세요.",
    say: (s, p) => p ? `${s}. ${p}번째.` : sentence(s), you: (u) => `내 자리: ${u}`,
    busy: (s) => `지금 혼잡합니다 — ${s}초 후 다시 시도합니다. 이 페이지를 열어 두세요.`, checking: "브라우저를 확인하는 중…", failed: "문제가 발생했습니다",
    gateEnded: { session: "예매 세션이 종료되었습니다.", spent: "이미 사용된 입장 링크입니다.",
      revoked: "주최 측이 예매 사이트를 잠시 닫았습니다.", token: "유효하지 않은 입장 링크입니다.",
      browser: "이 입장 링크는 대기열에서 기다린 브라우저에서만 쓸 수 있어 여기서는 사용되지 않았습니다." },
    continueHere: "이 브라우저에서 입장이 허용되었습니다. 버튼을 눌러 예매 사이트로 이동하세요.",
    lane: (n) => `대기 줄: ${n}`, inLane: (n) => `${n} 대기 줄`, code: "선예매 코드", noLane: (n) => `이 공연에는 ${n} 대기 줄이 없습니다.`,
    refused: { "code-required": "이 대기 줄은 선예매 코드가 필요합니다.", "code-refused": "이 대기 줄에 쓸 수 없는 코드입니다. 이 줄의 코드가 아니거나 다른 분이 이미 사용했습니다. 확인 후 다시 입력해 주세요.",
      "claim-missing": "이 대기 줄의 대상 회원이 아닙니다." },
  },
};
let lang = localStorage.getItem("qg:lang") ||
  ((navigator.languages || [navigator.language]).some((l) => /^ko\b/i.test(l)) ? "ko" : "en");
const sentence = (s) => /[.!?…]$/.test(s) ? s : s + "."; // not "It's your turn!."
const t = (k, ...a) => { const v = T[lang][k]; return typeof v === "function" ? v(...a) : v; };
let redraw = () => {};
function translate() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-t]").forEach((e) => { e.textContent = t(e.dataset.t); });
  $("lang").textContent = t("other");
  $("lang").lang = lang === "en" ? "ko" : "en";
  redraw();
}
$("lang").addEventListener("click", () => { lang = lang === "en" ? "ko" : "en"; localStorage.setItem("qg:lang", lang); translate(); });
const fail = (m) => { $("error").textContent = m; };

async function getJSON(url, opts) {
  const r = await fetch(url, opts);
  const body = r.status === 304 ? null : await r.json().catch(() => ({}));
  if (!r.ok && r.status !== 304) throw Object.assign(new Error(body.detail || `HTTP ${r.status}`), { status: r.status, r });
  return { r, body };
}

// "/" — the rooms taking fans, and a box to name one.
async function home() {
  translate();
  $("pick").addEventListener("submit", (ev) => { ev.preventDefault(); location.assign(`/c/${enc($("concert").value)}`); });
  try {
    const { body } = await getJSON("/v1/concerts");
    for (const c of body.concerts) {
      const li = document.createElement("li"), a = document.createElement("a");
      a.href = `/c/${enc(c.concertId)}`;
      a.textContent = c.name || c.concertId;
      li.append(a);
      if (c.opensAt) li.append(` · ${t("opensAt", new Date(c.opensAt).toLocaleString(lang))}`);
      $("list").append(li);
    }
    $("none").hidden = body.concerts.length > 0;
  } catch (e) { fail(e.message); }
}

// Colours: the text on the brand colour is black or white, whichever contrasts more.
function brand(info) {
  const root = document.documentElement.style;
  if (info.brandColor) {
    root.setProperty("--brand", info.brandColor);
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(info.brandColor.slice(i, i + 2), 16) / 255)
      .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    root.setProperty("--on-brand", 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 ? "#000" : "#fff");
  }
  if (info.backgroundColor) root.setProperty("--bg", info.backgroundColor);
  if (info.logoUrl) { $("logo").src = info.logoUrl; $("logo").hidden = false; }
  if (info.name) $("brand").textContent = info.name;
}

function clock(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000)), d = Math.floor(s / 86400);
  const hms = [Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60, s % 60].map((n) => String(n).padStart(2, "0")).join(":");
  return d ? `${d}d ${hms}` : hms;
}

const FINAL = new Set(["admitted", "expired", "removed", "completed"]);

async function room(id) {
  const key = `qg:${id}`;
  let info, skew = 0, last = null, src = null, timer = null, ticker = null, spoken = 0, done = false;
  try { info = (await getJSON(`/v1/concerts/${enc(id)}`)).body; } catch (e) {
    translate(); $("title").textContent = id; fail(e.status === 404 ? t("noConcert") : e.message); return;
  }
  skew = Date.parse(info.now) - Date.now();
  brand(info);
  const mode = info.fanIdentity;
  // jwt: the booking site links here with the fan's identity token in the fragment (never sent to
  // a server, never in a log); it is kept for this tab only and taken out of the address bar.
  const store = mode === "jwt" ? sessionStorage : localStorage;
  if (mode === "jwt") {
    const idToken = new URLSearchParams(location.hash.slice(1)).get("idToken");
    if (idToken) { sessionStorage.setItem(`${key}:id`, idToken); history.replaceState(null, "", location.pathname + location.search); }
  }
  // A new link from the booking site while the room is open: start over with its token.
  addEventListener("hashchange", () => { if (/idToken=/.test(location.hash)) location.reload(); });
  const idToken = sessionStorage.getItem(`${key}:id`);
  let entry = JSON.parse(store.getItem(key) || "null");
  // The gate sent the fan here from the booking site: where to send them back (kept for the
  // whole wait, reloads included), and whether a session or link of theirs just ended.
  const params = new URLSearchParams(location.search);
  if (params.get("return")) sessionStorage.setItem(`${key}:return`, params.get("return"));
  const gateEnded = params.get("ended");
  if (gateEnded) {
    $("gate").hidden = false;
    $("gate").textContent = (T[lang].gateEnded[gateEnded] || T[lang].gateEnded.session);
  }
  const save = () => store.setItem(key, JSON.stringify(entry));
  // The lane, chosen by the link (`?lane=fanclub`); the room of a concert without lanes has none.
  const lanes = info.lanes || [];
  const laneName = params.get("lane") || (entry && entry.lane) || null;
  const lane = laneName ? lanes.find((l) => l.name === laneName) : null;

  // A countdown to `at` (ms, server time) under `label`; ends by reloading the concert's phase.
  function countdown(at, label, then) {
    clearInterval(ticker);
    $("countdown").hidden = false;
    $("countLabel").dataset.t = label;
    $("countLabel").textContent = t(label);
    const tick = () => {
      const left = at - (Date.now() + skew);
      $("clock").textContent = clock(left);
      if (left <= 0) { clearInterval(ticker); $("countdown").hidden = true; then(); }
    };
    tick();
    ticker = setInterval(tick, 1000);
  }

  function drawPhase() {
    document.title = `${info.name || id} — ${t("room")}`;
    $("title").textContent = info.name || id;
    $("phase").textContent = info.phase === "scheduled"
      ? t("opensAt", new Date(info.opensAt).toLocaleString(lang)) : t(info.phase);
    // Sold out: the organiser's own words, as written, after ours.
    if (info.phase === "soldout" && info.soldOutMessage) $("phase").textContent += ` ${info.soldOutMessage}`;
    if (info.abandonAfterSeconds) { $("abandon").hidden = false; $("abandon").textContent = t("abandon", min(info.abandonAfterSeconds)); }
    $("who").textContent = entry ? t("you", entry.userId) : "";
    $("lanebox").hidden = !lane;
    if (lane) $("lanebox").textContent = t("lane", lane.name);
    if (laneName && !lane && lanes.length) fail(t("noLane", laneName));
  }

  // At the opening: the concert's phase again ("Sales are open."), past the browser's cache, and
  // once more a second later while the server's clock has not reached it yet.
  async function reloadInfo() {
    try {
      info = (await getJSON(`/v1/concerts/${enc(id)}`, { cache: "no-store" })).body;
      drawPhase();
      if (info.phase === "scheduled") setTimeout(reloadInfo, 1000);
    } catch (e) { fail(e.message); }
  }

  function showJoin() {
    const can = info.phase === "open" || info.phase === "scheduled";
    $("joinbox").hidden = !can;
    $("codebox").hidden = !(lane && lane.access === "code");
    $("code").required = !$("codebox").hidden;
    $("userbox").hidden = mode !== "body";
    $("user").required = mode === "body";
    if (mode === "body" && !$("user").value) $("user").value = `fan-${Math.random().toString(36).slice(2, 10)}`;
    const blocked = mode === "jwt" && !idToken;
    $("signin").hidden = !blocked;
    $("joinbtn").hidden = blocked;
    $("joinbtn").disabled = false;
  }

  function draw(s) {
    const first = !last;
    last = s;
    if (first) performance.mark("qg-first-status");
    if (!performance.getEntriesByName(`qg-${s.status}`).length) performance.mark(`qg-${s.status}`);
    $("place").hidden = false;
    $("joinbox").hidden = true;
    $("phase").hidden = s.status === "soldout";
    const state = t(s.status) || s.status;
    $("state").textContent = state;
    $("position").textContent = s.position ? `#${s.position.toLocaleString(lang)}` : "";
    $("ahead").textContent = s.position ? `${t("ahead", s.position - 1)} · ${t("of", s.queueLength || s.position)}` : "";
    // Positions are within the fan's lane: say which, where the concert has lanes.
    $("lane").hidden = !(s.lane && lanes.length);
    if (s.lane) $("lane").textContent = t("inLane", s.lane);
    if (s.position && !(entry.first >= s.position)) { entry.first = s.position; save(); }
    const p = s.status === "admitted" || s.status === "completed" ? 100
      : s.position && entry.first > 1 ? Math.round((100 * (entry.first - s.position)) / (entry.first - 1)) : 0;
    $("progress").value = p;
    $("progress").hidden = !["waiting", "admitted", "completed"].includes(s.status);
    $("progress").setAttribute("aria-valuetext", `${p}%`);
    $("eta").textContent = s.status === "soldout" ? `${t("soldoutNote")} ${s.message || ""}`.trim()
      : s.status !== "waiting" ? (s.status === "prequeue" ? t("prequeueNote") : "")
      : s.etaSeconds ? t("eta", Math.max(1, Math.floor((s.etaSeconds * 0.8) / 60)), Math.ceil((s.etaSeconds * 1.25) / 60)) : t("etaNone");
    $("keep").hidden = FINAL.has(s.status);
    $("abandon").hidden = FINAL.has(s.status) || !info.abandonAfterSeconds;
    if (s.status === "prequeue" && s.secondsToOpen > 0) countdown(Date.now() + skew + s.secondsToOpen * 1000, "opensIn", reloadInfo);
    else if (info.phase !== "scheduled") { clearInterval(ticker); $("countdown").hidden = true; }
    // The live region speaks on a change of state, and of position at most every 30 s.
    const now = Date.now();
    if (first || s.status !== $("say").dataset.status || now - spoken > 30000) {
      $("say").dataset.status = s.status;
      $("say").textContent = t("say", state, s.position);
      spoken = now;
    }
    if (s.status === "admitted") admitted(s);
    if (FINAL.has(s.status)) { done = true; stop(); }
    // Sold out ends the stream; the place is kept, so the page looks now and then for tickets
    // coming back (the concert open again), and then watches again.
    if (s.status === "soldout" && src) { stop(); const w = s.refreshAfterSeconds || 30; timer = setTimeout(() => poll(null, w), w * 1000); }
    if (s.status === "expired" || s.status === "removed") {
      store.removeItem(key);
      entry = null;
      $("joinbtn").dataset.t = "rejoin";
      $("joinbtn").textContent = t("rejoin");
      showJoin();
    }
  }

  // Admitted: on to the booking site with the token (docs/howto-booking-site.md), with a
  // button in case the redirect is blocked.
  function admitted(s) {
    $("turn").hidden = false;
    const back = returnTo();
    if ((!info.redirectUrl && !back) || !s.admissionToken) { $("eta").textContent = t("noRedirect"); $("go").hidden = true; return; }
    const to = back || new URL(info.redirectUrl);
    to.searchParams.set("queuegate_token", s.admissionToken);
    // Sites that check the token themselves read it as admissionToken.
    if (!back) to.searchParams.set("admissionToken", s.admissionToken);
    $("go").href = to.href;
    // A link refused here (not this browser's): on at the fan's click only.
    if (gateEnded === "browser") { $("eta").textContent = t("continueHere"); return; }
    // A session that just ended spent this token: going back would only return here.
    if (gateEnded) {
      $("state").textContent = $("gate").textContent;
      $("gate").hidden = true; $("eta").textContent = ""; $("go").hidden = true; return;
    }
    $("eta").textContent = t("redirecting");
    setTimeout(() => location.assign(to.href), 2500);
  }

  // Back to the page the gate sent the fan from, on the booking site only, never over a weaker
  // scheme than redirectUrl's or this room's (docs/explain-design.md).
  function returnTo() {
    const raw = sessionStorage.getItem(`${key}:return`);
    if (!raw) return null;
    let u;
    try { u = new URL(raw); } catch (_) { return null; }
    const hosts = (info.protectedHosts || []).slice();
    if (info.redirectUrl) hosts.push(new URL(info.redirectUrl).host);
    const scheme = info.redirectUrl ? new URL(info.redirectUrl).protocol : location.protocol === "https:" ? "https:" : null;
    const allowed = scheme === "https:" ? ["https:"] : ["https:", "http:"];
    return allowed.includes(u.protocol) && hosts.includes(u.host) ? u : null;
  }

  function reconnecting(on) { $("reconnecting").hidden = !on || done; }
  function stop() { if (src) src.close(); src = null; clearTimeout(timer); }
  const base = () => `/v1/concerts/${enc(id)}/queue/${enc(entry.userId)}`;

  // Polling, when there is no stream to spare or no EventSource: at the server's pace, with
  // If-None-Match (an unchanged status is a 304).
  async function poll(etag, wait = 2) {
    let next = wait;
    try {
      const headers = { Authorization: `Bearer ${entry.token}` };
      if (etag) headers["If-None-Match"] = etag;
      const { r, body } = await getJSON(base(), { headers, cache: "no-store" });
      reconnecting(false);
      const wasSoldOut = last && last.status === "soldout";
      if (body) { draw(body); etag = r.headers.get("ETag"); next = body.refreshAfterSeconds || 2; }
      if (done) return;
      if (wasSoldOut && body && body.status !== "soldout" && window.EventSource) return void watch();
    } catch (e) {
      if (e.status === 401 || e.status === 404) { store.removeItem(key); entry = null; showJoin(); fail(e.message); return; }
      reconnecting(true);
      next = Math.min(30, wait * 2);
    }
    timer = setTimeout(() => poll(etag, next), next * 1000);
  }

  // The stream's URL carries a 60 s ticket, never the entry token; every reconnect is ours (a
  // fresh ticket after a jittered delay), then polling after some failures (docs/explain-design.md).
  let failures = 0;
  async function watch() {
    stop();
    done = false;
    if (!window.EventSource) return void poll();
    let ticket;
    try {
      // Every POST is JSON (others are refused: docs/explain-security.md), even without a body.
      const auth = { method: "POST", headers: { Authorization: `Bearer ${entry.token}`, "Content-Type": "application/json" }, cache: "no-store" };
      ticket = (await getJSON(`${base()}/events/ticket`, auth)).body.ticket;
    } catch (e) {
      reconnecting(true);
      return void poll(null, 1);
    }
    src = new EventSource(`${base()}/events?ticket=${enc(ticket)}`);
    src.addEventListener("status", (ev) => { failures = 0; reconnecting(false); draw(JSON.parse(ev.data)); });
    // The gateway is going away, or the stream reached its lifetime: come back with a new ticket.
    src.addEventListener("reconnect", () => { reconnecting(true); again(); });
    src.onerror = () => { if (!done) { reconnecting(true); again(); } };
  }
  function again() {
    if (src) src.close();
    src = null;
    failures += 1;
    clearTimeout(timer);
    if (failures > 3) return void poll(null, 1);
    timer = setTimeout(watch, 1000 + Math.random() * 4000 * failures);
  }

  // A concert may ask new anonymous fans for a proof of work: SHA-256 of "challenge:n" starting
  // with `difficulty` zero bits.
  async function proofOfWork() {
    $("error").textContent = t("checking");
    const ch = (await getJSON(`/v1/concerts/${enc(id)}/challenge`)).body, te = new TextEncoder();
    for (let n = 0; ; n++) {
      const d = new Uint8Array(await crypto.subtle.digest("SHA-256", te.encode(`${ch.challenge}:${n}`)));
      let bits = 0;
      for (const b of d) { if (b === 0) { bits += 8; continue; } bits += Math.clz32(b) - 24; break; }
      if (bits >= ch.difficulty) { $("error").textContent = ""; return { challenge: ch.challenge, solution: String(n) }; }
    }
  }

  async function join(ev) {
    if (ev) ev.preventDefault();
    $("joinbtn").disabled = true;
    fail("");
    performance.mark("qg-join");
    const headers = { "Content-Type": "application/json" };
    if (mode === "jwt") headers.Authorization = `Bearer ${idToken}`;
    const body = mode === "body" ? { userId: $("user").value } : {};
    if (lane) body.lane = lane.name;
    if (lane && lane.access === "code") body.code = $("code").value.trim();
    const send = () => fetch(`/v1/concerts/${enc(id)}/queue`, { method: "POST", headers, body: JSON.stringify(body) });
    try {
      let r = await send(), b = await r.json();
      if (r.status === 403 && /proof of work/.test(b.detail || "")) { body.pow = await proofOfWork(); r = await send(); b = await r.json(); }
      // Too many at once, or the broker busy: try again by itself after the server's
      // Retry-After, spread a little so a crowd does not come back in the same second.
      if (r.status === 429 || r.status === 503) {
        const wait = Math.min(60, Number(r.headers.get("Retry-After")) || 5) * (0.8 + Math.random() * 0.4);
        fail(t("busy", Math.ceil(wait)));
        setTimeout(join, wait * 1000);
        return;
      }
      if (r.status === 410) { info.phase = "soldout"; info.soldOutMessage = b.detail; drawPhase(); showJoin(); return; }
      // A lane that refuses the fan says why (its code is wrong, used, missing; not a member).
      const refusal = r.status === 403 && (b.type || "").replace("urn:queuegate:problem:", "");
      if (refusal && T[lang].refused[refusal]) { fail(T[lang].refused[refusal]); $("joinbtn").disabled = false; return; }
      if (r.status !== 202) throw new Error(b.detail || `HTTP ${r.status}`);
      entry = { userId: b.userId, token: b.token, lane: lane ? lane.name : null };
      save();
      drawPhase();
      draw(b);
      watch();
    } catch (e) { fail(e.message || t("failed")); $("joinbtn").disabled = false; }
  }

  redraw = () => { drawPhase(); if (last) draw(last); };
  $("join").addEventListener("submit", join);
  translate();
  if (info.phase === "scheduled" && !entry) countdown(Date.parse(info.opensAt), "opensIn", reloadInfo);
  if (entry) watch(); else showJoin();
}

if (location.pathname.startsWith("/c/")) room(decodeURIComponent(location.pathname.slice(3)));
else home();
