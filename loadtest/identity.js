// How the k6 scripts name fans, as the gateway's QUEUEGATE_FAN_IDENTITY says (env IDENTITY):
//   body (default): {"userId"} in the body;
//   anonymous:      {} — the gateway names the fan (the 202's userId);
//   jwt:            an HS256 identity token signed here with JWT_SECRET (JWT_ISS, JWT_AUD), as
//                   the booking site would issue it.
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';

const IDENTITY = __ENV.IDENTITY || 'body';

function b64url(s) {
  return encoding.b64encode(s, 'rawurl');
}

// An HS256 identity token for fan `sub`.
function identityToken(sub) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const exp = Math.floor(Date.now() / 1000) + 600;
  const body = b64url(JSON.stringify({ sub, exp, iss: __ENV.JWT_ISS || 'https://tickets.example', aud: __ENV.JWT_AUD || 'queuegate' }));
  const sig = crypto.hmac('sha256', __ENV.JWT_SECRET, `${head}.${body}`, 'base64rawurl');
  return `${head}.${body}.${sig}`;
}

// The request of fan `name` in the IDENTITY mode.
export function joinRequest(name) {
  const headers = { 'Content-Type': 'application/json' };
  if (IDENTITY === 'anonymous') return { body: '{}', headers };
  if (IDENTITY === 'jwt') return { body: '{}', headers: Object.assign(headers, { Authorization: `Bearer ${identityToken(name)}` }) };
  return { body: JSON.stringify({ userId: name }), headers };
}

