// A webhook endpoint for scripts/bench_events.sh: answers every POST 204 at once and, for each
// delivery, records when it came and how long after the change it announces (the body's
// CloudEvents `time`). `node bench_events_endpoint.mjs PORT OUT.json`; on SIGTERM it writes
// {count, distinct, firstMs, lastMs, delaysMs: [...]} to OUT.json and exits.
import { createServer } from "node:http";
import { writeFileSync } from "node:fs";

const [port, out] = process.argv.slice(2);
const ids = new Set();
const delays = [];
let count = 0, firstMs = null, lastMs = null;

createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const now = Date.now();
    res.writeHead(204).end();
    try {
      const event = JSON.parse(Buffer.concat(chunks).toString());
      count += 1;
      ids.add(req.headers["webhook-id"]);
      firstMs ??= now;
      lastMs = now;
      delays.push(now - Date.parse(event.time));
    } catch { /* not a delivery */ }
  });
}).listen(Number(port), "127.0.0.1");

process.on("SIGTERM", () => {
  writeFileSync(out, JSON.stringify({ count, distinct: ids.size, firstMs, lastMs, delaysMs: delays }));
  process.exit(0);
});
