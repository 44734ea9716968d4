// Test-only OAuth 2.0 authorization server, built on oidc-provider 8.8.1 (see README.md).
// Owns: starting oidc-provider on 127.0.0.1 with the client credentials grant and token
// introspection, loading clients from a JSON file, recording every token-endpoint request
// (test-only instrumentation under /__test/), and shutting down cleanly on SIGTERM/SIGINT.
// Never prints secrets or tokens. Stdout carries exactly one line: `listening http://127.0.0.1:PORT`.
//
//   node server.mjs [--port N] [--clients FILE] [--access-token-ttl SECONDS] [--log FILE]

import { appendFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

import MemoryAdapter from './adapter.mjs';

// oidc-provider prints its notices with console.info (stdout). Stdout is reserved for the
// "listening" line that tests wait for, so library chatter goes to stderr instead.
console.info = console.error;
// We read the token-endpoint body ourselves before oidc-provider does (see recordTokenRequests);
// oidc-provider then warns once that the body was already read. That is intended: drop the warning.
const warn = console.warn;
console.warn = (...args) => {
  if (!String(args[0]).includes('already parsed request body detected')) warn(...args);
};

const USAGE = 'usage: node server.mjs [--port N] [--clients FILE] [--access-token-ttl SECONDS] [--log FILE]';
let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      clients: { type: 'string', default: fileURLToPath(new URL('./clients.json', import.meta.url)) },
      'access-token-ttl': { type: 'string', default: '3600' },
      log: { type: 'string' },
    },
  }));
} catch (err) {
  console.error(`${err.message}\n${USAGE}`);
  process.exit(2);
}

function intArg(name, text, min) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return n;
}

const port = intArg('port', args.port, 0);
const accessTokenTtl = intArg('access-token-ttl', args['access-token-ttl'], 1);
const clients = JSON.parse(readFileSync(args.clients, 'utf8'));
const TOKEN_PATH = '/token';
const INTROSPECTION_PATH = '/token/introspection';

// The one client allowed to introspect tokens of other clients; any client may introspect its own.
const INTROSPECTOR = 'introspector';

// --- test-only instrumentation: record of token-endpoint requests ---------------------------

const requests = [];

// Form-url-decoding, as RFC 6749 appendix B and oidc-provider apply to Basic credentials.
function formDecode(part) {
  return decodeURIComponent(part.replace(/\+/g, '%20'));
}

function basicClientId(header) {
  const [scheme, value] = (header || '').split(' ');
  if (!scheme || scheme.toLowerCase() !== 'basic') return { present: false };
  const decoded = Buffer.from(value || '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  try {
    return { present: true, clientId: colon === -1 ? null : formDecode(decoded.slice(0, colon)) };
  } catch {
    return { present: true, clientId: null }; // badly encoded; oidc-provider answers 400
  }
}

function readBody(req, limit = 64 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        // As a real server answers it: 413, not Koa's 500 for an error without a status.
        reject(Object.assign(new Error('request body too large'), { status: 413, expose: true }));
      }
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// Runs before oidc-provider's own middleware (provider.use puts it first), so a request is
// recorded even when oidc-provider rejects it. The secret itself is never recorded.
async function recordTokenRequests(ctx, next) {
  if (ctx.path !== TOKEN_PATH) return next();

  let form = new URLSearchParams();
  if (ctx.is('application/x-www-form-urlencoded')) {
    const raw = await readBody(ctx.req);
    ctx.request.body = raw; // oidc-provider parses this string since the stream is consumed
    form = new URLSearchParams(raw);
  }
  const basic = basicClientId(ctx.get('authorization'));
  const inBody = form.has('client_secret');
  const entry = {
    time: new Date().toISOString(),
    method: ctx.method,
    path: ctx.path,
    auth: basic.present ? (inBody ? 'both' : 'header') : (inBody ? 'body' : 'none'),
    client_id: (basic.present ? basic.clientId : form.get('client_id')) ?? null,
    grant_type: form.get('grant_type'),
    scope: form.get('scope'),
    // The client's end of the TCP connection: requests with the same port
    // came over one kept-alive connection.
    remote_port: ctx.req.socket.remotePort ?? null,
    status: null,
  };
  requests.push(entry);

  try {
    await next();
  } finally {
    entry.status = ctx.status;
    if (args.log) appendFileSync(args.log, `${JSON.stringify(entry)}\n`);
  }
}

// Test-only endpoints: GET /__test/requests lists the record, POST /__test/reset clears it.
async function testEndpoints(ctx, next) {
  if (ctx.path === '/__test/requests' && ctx.method === 'GET') {
    ctx.body = requests;
  } else if (ctx.path === '/__test/reset' && ctx.method === 'POST') {
    requests.length = 0;
    ctx.status = 204;
  } else {
    await next();
  }
}

// --- the authorization server -----------------------------------------------------------------

function configuration() {
  // A fresh signing key per run, so oidc-provider does not fall back to its public dev keys.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    adapter: MemoryAdapter,
    clients,
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['openid', 'offline_access', 'products.write'],
    routes: { token: TOKEN_PATH, introspection: INTROSPECTION_PATH },
    ttl: { ClientCredentials: accessTokenTtl },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => (
          client.clientId === INTROSPECTOR || token.clientId === client.clientId
        ),
      },
    },
  };
}

const server = createServer();
server.on('error', (err) => {
  console.error(`cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', async () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration());
  provider.use(testEndpoints);
  provider.use(recordTokenRequests);
  try {
    // oidc-provider checks client metadata lazily; check it now so a bad clients file fails fast.
    await Promise.all(clients.map((client) => provider.Client.find(client.client_id)));
  } catch (err) {
    console.error(`invalid client in ${args.clients}: ${err.message} ${err.error_description ?? ''}`);
    process.exit(2);
  }
  server.on('request', provider.callback());
  process.stdout.write(`listening ${issuer}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
