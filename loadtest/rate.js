// k6 fixed-rate joins (used by make bench): RATE joins/s of unique fans for DURATION.
//   k6 run -e BASE=http://127.0.0.1:8080 -e CONCERT=bench -e RATE=5000 -e DURATION=20s loadtest/rate.js
// IDENTITY=body|anonymous|jwt as the gateway's QUEUEGATE_FAN_IDENTITY (see identity.js).
import http from 'k6/http';
import exec from 'k6/execution';
import { joinRequest } from './identity.js';

const BASE = __ENV.BASE || 'http://127.0.0.1:8080';
const CONCERT = __ENV.CONCERT || 'bench';
const RUN = __ENV.RUN || `${Date.now()}`;

export const options = {
  discardResponseBodies: true,
  scenarios: {
    rate: {
      executor: 'constant-arrival-rate',
      rate: parseInt(__ENV.RATE || '1000'),
      timeUnit: '1s',
      duration: __ENV.DURATION || '20s',
      preAllocatedVUs: 300,
      maxVUs: 1500,
    },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
};

export default function () {
  const req = joinRequest(`rate-${RUN}-${exec.scenario.iterationInTest}`);
  http.post(`${BASE}/v1/concerts/${CONCERT}/queue`, req.body, { headers: req.headers });
}
