// k6 soak: steady joins, one status poll per join, and fans holding status streams.
//
//   k6 run -e BASE=http://127.0.0.1:8080 -e CONCERT=bench -e RATE=300 -e WATCHERS=40 \
//     -e DURATION=30m loadtest/soak.js
//
// `scripts/soak.sh` (run by `make bench`) drives it while it kills and restarts the services;
// it compares the `joined` counter (202s) with what Redis holds afterwards. Joins that meet a
// fault may answer 503 (counted in `unavailable`); nothing here fails the run on its own.
import http from 'k6/http';
import exec from 'k6/execution';
import { joinRequest } from './identity.js';
import { Counter } from 'k6/metrics';

const BASE = __ENV.BASE || 'http://127.0.0.1:8080';
const CONCERT = __ENV.CONCERT || 'bench';
const RUN = __ENV.RUN || `${Date.now()}`;
const WATCHERS = parseInt(__ENV.WATCHERS || '0');
const joined = new Counter('joined');
const unavailable = new Counter('unavailable');
const other_errors = new Counter('other_errors');
const polls = new Counter('polls');
const streams = new Counter('streams_opened');

const scenarios = {
  soak: {
    executor: 'constant-arrival-rate',
    exec: 'step',
    rate: parseInt(__ENV.RATE || '1000'),
    timeUnit: '1s',
    duration: __ENV.DURATION || '5m',
    preAllocatedVUs: 200,
    maxVUs: 1000,
  },
};
if (WATCHERS > 0) {
  scenarios.watch = { executor: 'constant-vus', exec: 'watch', vus: WATCHERS, duration: __ENV.DURATION || '5m' };
}
export const options = { scenarios, discardResponseBodies: true };

function join(user) {
  const req = joinRequest(user);
  const r = http.post(`${BASE}/v1/concerts/${CONCERT}/queue`, req.body, {
    headers: req.headers,
    tags: { name: 'join' },
    responseType: 'text',
  });
  if (r.status === 202) {
    joined.add(1);
    return r.json();
  }
  if (r.status === 503) unavailable.add(1);
  else other_errors.add(1);
  return null;
}

export function step() {
  const fan = join(`soak-${RUN}-${exec.scenario.iterationInTest}`);
  if (!fan) return;
  const s = http.get(`${BASE}/v1/concerts/${CONCERT}/queue/${fan.userId}`, {
    headers: { Authorization: `Bearer ${fan.token}` },
    tags: { name: 'status' },
  });
  if (s.status === 200 || s.status === 404) polls.add(1);
  else if (s.status !== 503) other_errors.add(1);
}

// A fan joins and watches the stream for 20 s (the request's timeout ends it), then the next.
export function watch() {
  const fan = join(`watch-${RUN}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`);
  if (!fan) return;
  streams.add(1);
  http.get(`${BASE}/v1/concerts/${CONCERT}/queue/${fan.userId}/events`, {
    headers: { Authorization: `Bearer ${fan.token}`, Accept: 'text/event-stream' },
    tags: { name: 'events' },
    timeout: '20s',
  });
}
