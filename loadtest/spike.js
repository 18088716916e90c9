// k6 spike: a ramping arrival rate of fans never seen before joining one concert, each then
// polling its status every few seconds like the waiting-room page does.
//
//   k6 run -e BASE=http://127.0.0.1:8080 -e CONCERT=bench -e PEAK=10000 loadtest/spike.js
//
// Thresholds: no 5xx, join p99 under 25 ms, status p99 under 25 ms.
import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { joinRequest } from './identity.js';
import { Counter } from 'k6/metrics';

const BASE = __ENV.BASE || 'http://127.0.0.1:8080';
const CONCERT = __ENV.CONCERT || 'bench';
const PEAK = parseInt(__ENV.PEAK || '5000');
const RUN = __ENV.RUN || `${Date.now()}`;
const accepted = new Counter('joins_accepted');
const server_errors = new Counter('server_errors');

export const options = {
  discardResponseBodies: false,
  scenarios: {
    join: {
      executor: 'ramping-arrival-rate',
      exec: 'join',
      startRate: Math.ceil(PEAK / 10),
      timeUnit: '1s',
      preAllocatedVUs: 200,
      maxVUs: 2000,
      stages: [
        { target: PEAK, duration: '5s' },
        { target: PEAK, duration: '20s' },
        { target: 0, duration: '5s' },
      ],
    },
  },
  thresholds: {
    server_errors: ['count==0'],
    'http_req_duration{name:join}': ['p(99)<25'],
    'http_req_duration{name:status}': ['p(99)<25'],
  },
};

export function join() {
  // Unique per iteration across the whole test: run id + scenario iteration number.
  const user = `k6-${RUN}-${exec.scenario.iterationInTest}`;
  const req = joinRequest(user);
  const r = http.post(`${BASE}/v1/concerts/${CONCERT}/queue`, req.body, { headers: req.headers, tags: { name: 'join' } });
  if (r.status >= 500) server_errors.add(1);
  if (!check(r, { 'join 202': (x) => x.status === 202 })) return;
  accepted.add(1);
  const token = r.json('token');
  const fan = r.json('userId'); // the gateway's name for the fan (anonymous mode mints one)
  // Poll twice, a few seconds apart, like the page does.
  for (let i = 0; i < 2; i++) {
    sleep(2 + Math.random() * 2);
    const s = http.get(`${BASE}/v1/concerts/${CONCERT}/queue/${fan}`, {
      headers: { Authorization: `Bearer ${token}` },
      tags: { name: 'status' },
    });
    if (s.status >= 500) server_errors.add(1);
    check(s, { 'status 200': (x) => x.status === 200 });
  }
}
