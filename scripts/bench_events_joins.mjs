// Joins at a steady rate for scripts/bench_events.sh: `node bench_events_joins.mjs BASE CONCERT
// PER_SECOND SECONDS TAG` posts PER_SECOND joins a second (body mode, fans TAG-<n>) for SECONDS
// seconds, and prints how many got 202 (and the other answers or errors, by kind).
const [base, concert, perSecond, seconds, tag] = process.argv.slice(2);
const total = Number(perSecond) * Number(seconds);
let accepted = 0, n = 0;
const other = {};
const started = Date.now();
const pending = [];
while (n < total) {
  const due = started + (n * 1000) / Number(perSecond);
  const wait = due - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const userId = `${tag}-${n++}`;
  pending.push(fetch(`${base}/v1/concerts/${concert}/queue`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ userId }),
  }).then((r) => { if (r.status === 202) accepted += 1; else other[r.status] = (other[r.status] || 0) + 1; },
    (e) => { const k = String(e.cause?.code || e.cause?.message || e.message); other[k] = (other[k] || 0) + 1; }));
}
await Promise.all(pending);
console.log(JSON.stringify({ sent: total, accepted, other }));
