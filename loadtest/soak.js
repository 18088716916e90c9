// k6 soak: steady joins and status polls for several minutes.
//
//   k6 run -e BASE=http://127.0.0.1:8080 -e CONCERT=bench -e RATE=2000 -e DURATION=5m loadtest/soak.js
//
// Thresholds: no 5xx, join p99 under 50 ms.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { joinRequest } from './identity.js';
import { Counter } from 'k6/metrics';

const BASE = __ENV.BASE || 'http://127.0.0.1:8080';
const CONCERT = __ENV.CONCERT || 'bench';
const RUN = __ENV.RUN || `${Date.now()}`;
const server_errors = new Counter('server_errors');

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      exec: 'step',
      rate: parseInt(__ENV.RATE || '1000'),
      timeUnit: '1s',
      duration: __ENV.DURATION || '5m',
      preAllocatedVUs: 200,
      maxVUs: 1000,
    },
  },
  thresholds: {
    server_errors: ['count==0'],
    'http_req_duration{name:join}': ['p(99)<50'],
  },
};

export function step() {
  const user = `soak-${RUN}-${exec.scenario.iterationInTest}`;
  const req = joinRequest(user);
  const r = http.post(`${BASE}/v1/concerts/${CONCERT}/queue`, req.body, { headers: req.headers, tags: { name: 'join' } });
  if (r.status >= 500) server_errors.add(1);
  if (!check(r, { 'join 202': (x) => x.status === 202 })) return;
  const s = http.get(`${BASE}/v1/concerts/${CONCERT}/queue/${r.json('userId')}`, {
    headers: { Authorization: `Bearer ${r.json('token')}` },
    tags: { name: 'status' },
  });
  if (s.status >= 500) server_errors.add(1);
}
