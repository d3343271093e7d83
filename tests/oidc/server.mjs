#!/usr/bin/env node
// Test OAuth 2.0 / OpenID Connect authorization server for the Akhrot Desktop end-to-end tests.
// A real node-oidc-provider (npm `oidc-provider`, pinned in package.json) on 127.0.0.1, with an
// in-memory store that the tests can poke through a small control API. Test use only.
//
// Endpoints (all relative to the issuer http://127.0.0.1:PORT):
//   discovery      GET  /.well-known/openid-configuration
//   authorization  GET  /auth                 (resume after login: GET /auth/<uid>)
//   login form     GET  /interaction/<uid>    (devInteractions; POST it back: prompt=login, login, password)
//   token          POST /token
//   userinfo       GET  /me                   (Authorization: Bearer <access_token>)
//   revocation     POST /token/revocation
//   jwks           GET  /jwks
//   PAR            POST /request              (on by default in oidc-provider, not needed by the tests)
//   end session    GET  /session/end
//   test control   GET  /__test/stats         -> {"tokenRequests":n,"authorizationCode":n,"refreshToken":n,...}
//                  POST /__test/reset-stats
//                  POST /__test/revoke-all[?sessions=1]   drop every grant/token (and login sessions)
//                  POST /__test/drop-access-tokens        forget issued access tokens only (grants and
//                                                         refresh tokens stay: a refresh still works)
//                  POST /__test/delay-token?ms=N          delay every token answer by N ms (0 = off)
//                  POST /__test/fail-token?status=503&count=N[&error=code]  next N token requests fail
//                  POST /__test/stated-expires-in?s=N     token answers state expires_in=N (empty: off)
//                  GET  /__test/refreshes?since=SEQ       the refresh_token grants seen, in order
//                  GET  /__test/config                    the effective settings
//
// Usage: node server.mjs [--port N] [--access-ttl S] [--refresh-ttl S] [--rotate|--no-rotate]
//                        [--pkce-required|--no-pkce-required] [--lenient-client-auth]
//                        [--ignore-stdin] [--verbose]
// Prints exactly one line on stdout once listening:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT}
// Everything else (oidc-provider notices and warnings, --verbose logs) goes to stderr.
// Runs until SIGTERM/SIGINT, or until stdin reaches EOF when stdin is a pipe or a socket.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

// oidc-provider prints its NOTICEs with console.info (stdout). stdout must carry only the one JSON line.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

const { default: Provider, interactionPolicy } = await import('oidc-provider');

// ---------------------------------------------------------------- arguments

function usage(msg) {
  if (msg) console.error(`server.mjs: ${msg}`);
  console.error('usage: node server.mjs [--port N] [--access-ttl SECONDS] [--refresh-ttl SECONDS] '
    + '[--rotate|--no-rotate] [--pkce-required[=true|false]|--no-pkce-required] [--lenient-client-auth] '
    + '[--ignore-stdin] [--verbose]');
  process.exit(2);
}

function parseBool(flag, value) {
  if (['true', '1', 'yes', 'on'].includes(value)) return true;
  if (['false', '0', 'no', 'off'].includes(value)) return false;
  return usage(`${flag} expects true or false, got ${JSON.stringify(value)}`);
}

function parseSeconds(flag, value) {
  if (value === undefined || !/^\d+$/.test(value)) usage(`${flag} expects a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

const opts = {
  port: 0,
  accessTtl: 3600,
  refreshTtl: 14 * 24 * 3600,
  rotate: false,
  pkceRequired: true,
  lenientClientAuth: false,
  ignoreStdin: false,
  verbose: false,
};

{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 1) {
    let arg = argv[i];
    let inline;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq !== -1) {
      inline = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const value = () => (inline !== undefined ? inline : argv[(i += 1)]);
    const optionalBool = () => {
      if (inline !== undefined) return parseBool(arg, inline);
      if (['true', 'false'].includes(argv[i + 1])) return parseBool(arg, argv[(i += 1)]);
      return true;
    };
    switch (arg) {
      case '--port': opts.port = parseSeconds(arg, value()); break;
      case '--access-ttl': opts.accessTtl = parseSeconds(arg, value()); break;
      case '--refresh-ttl': opts.refreshTtl = parseSeconds(arg, value()); break;
      case '--rotate': opts.rotate = optionalBool(); break;
      case '--no-rotate': opts.rotate = false; break;
      case '--pkce-required': opts.pkceRequired = optionalBool(); break;
      case '--no-pkce-required': opts.pkceRequired = false; break;
      case '--lenient-client-auth': opts.lenientClientAuth = true; break;
      case '--ignore-stdin': opts.ignoreStdin = true; break;
      case '--verbose': opts.verbose = true; break;
      case '--help': case '-h': usage(); break;
      default: usage(`unknown argument ${JSON.stringify(argv[i])}`);
    }
  }
  if (opts.port > 65535) usage('--port must be 0..65535');
  if (opts.accessTtl < 1) usage('--access-ttl must be at least 1');
  if (opts.refreshTtl < 1) usage('--refresh-ttl must be at least 1');
}

const log = (...args) => { if (opts.verbose) console.error('[oidc-test]', ...args); };

// ---------------------------------------------------------------- in-memory store

// One Map for every model, so that /__test/revoke-all can see and drop everything.
// Same contract as oidc-provider's own memory adapter (find/upsert/consume/destroy/findByUid/
// findByUserCode/revokeByGrantId); entries expire at their expiresIn.
const store = new Map(); // `${model}:${id}` -> { model, id, payload, expiresAt }

const GRANT_BOUND = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
]);

function live(entry) {
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
    store.delete(`${entry.model}:${entry.id}`);
    return undefined;
  }
  return entry;
}

class TestAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    store.set(this.key(id), {
      model: this.model,
      id,
      payload,
      expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined,
    });
  }

  async find(id) { return live(store.get(this.key(id)))?.payload; }

  async findByUid(uid) {
    for (const entry of store.values()) {
      if (entry.model === this.model && entry.payload.uid === uid && live(entry)) return entry.payload;
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const entry of store.values()) {
      if (entry.model === this.model && entry.payload.userCode === userCode && live(entry)) return entry.payload;
    }
    return undefined;
  }

  async consume(id) {
    const entry = live(store.get(this.key(id)));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of store) {
      if (entry.model === this.model && entry.payload.grantId === grantId) store.delete(key);
    }
  }
}

function revokeAll({ sessions }) {
  const dropped = {};
  for (const [key, entry] of store) {
    if (entry.model === 'Grant' || GRANT_BOUND.has(entry.model)
      || (sessions && (entry.model === 'Session' || entry.model === 'Interaction'))) {
      store.delete(key);
      dropped[entry.model] = (dropped[entry.model] ?? 0) + 1;
    }
  }
  return dropped;
}

// ---------------------------------------------------------------- test-control state

const emptyStats = () => ({
  tokenRequests: 0, // every POST /token, whatever its grant_type and outcome (injected failures too)
  authorizationCode: 0, // of which grant_type=authorization_code
  refreshToken: 0, // of which grant_type=refresh_token
  otherGrantType: 0, // of which another or no grant_type
  tokenSuccess: 0, // answered 200
  tokenErrors: 0, // answered with an error (including injected ones)
  injectedFailures: 0, // answered by /__test/fail-token
  grantSuccess: 0, // provider 'grant.success' events
  grantError: 0, // provider 'grant.error' events
  revocations: 0, // POST /token/revocation
  userinfo: 0, // requests to /me
  authorizations: 0, // GET/POST /auth (not counting the /auth/<uid> resume)
  logins: 0, // login form submissions
  refreshRotated: 0, // refresh_token grants answered 200 that consumed the presented refresh token
  refreshReuse: 0, // refresh_token grants that presented an already-consumed (rotated) refresh token
  tokenInFlight: 0, // POST /token requests received and not yet answered (not reset by reset-stats)
});

let stats = emptyStats();
let tokenDelayMs = 0;
let failToken = { status: 503, count: 0, error: undefined };
// When set, every successful token answer states this expires_in (the token itself still lives
// --access-ttl): a client then sees its token expired at once and refreshes on its next use,
// without the test sleeping for a real expiry (oidc-provider's TTLs must be >= 1 s).
let statedExpiresIn;

// Every refresh_token grant, in order: which refresh token was presented (a short SHA-256, never
// the token), what it got, and whether it was a reuse of a token this server had already rotated.
const refreshLog = []; // { seq, at, presented, issued, status, outcome: 'rotated'|'kept'|'reuse'|'error' }
const rotatedAway = new Set(); // hashes of refresh tokens consumed by a successful rotation
const tokenHash = (t) => crypto.createHash('sha256').update(String(t)).digest('hex').slice(0, 16);

// ---------------------------------------------------------------- provider

const CALLBACK = 'http://127.0.0.1/oauth/callback';
// The desktop app's deep link (a native client may use a private-use URI scheme, RFC 8252 7.1).
const DEEP_LINK = 'akhrot://oauth/callback';
const commonClient = {
  application_type: 'native',
  redirect_uris: [CALLBACK, DEEP_LINK],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  scope: 'openid email profile offline_access',
};
const clients = [
  {
    ...commonClient, client_id: 'basic-client', client_secret: 'basic-secret', token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    ...commonClient, client_id: 'post-client', client_secret: 'post-secret', token_endpoint_auth_method: 'client_secret_post',
  },
  { ...commonClient, client_id: 'public-client', token_endpoint_auth_method: 'none' },
];

// A fixed, test-only key. Generating one at start (generateKeyPairSync + export as JWK) can
// deadlock Node 20: a GC during the JWK export destroys the key-generation job, whose destructor
// waits on a mutex the export holds. Seen in CI as a server that listens but never answers.
function signingKey() {
  const { _comment, ...jwk } = JSON.parse(
    fs.readFileSync(new URL('./test-signing-key.json', import.meta.url), 'utf8'),
  );
  return jwk;
}

// No consent screen: the consent prompt for native clients normally fires on every authorization
// ("native_client_prompt"); the grant itself is created by loadExistingGrant below.
const policy = interactionPolicy.base();
policy.get('consent').checks.remove('native_client_prompt');

function configuration() {
  return {
    adapter: TestAdapter,
    clients,
    jwks: { keys: [signingKey()] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return {
            sub, email: `${sub}@example.test`, email_verified: true, name: sub, preferred_username: sub,
          };
        },
      };
    },
    features: {
      devInteractions: { enabled: true },
      userinfo: { enabled: true },
      revocation: { enabled: true },
      // With resource indicators on (the library default) a `resource` parameter would need a
      // resource-server definition and the access token would no longer be good for /me.
      resourceIndicators: { enabled: false },
    },
    interactions: { policy },
    pkce: {
      // --pkce-required (default): every client must send code_challenge (S256).
      // --no-pkce-required: the library default, PKCE required only for public clients.
      required: (ctx, client) => opts.pkceRequired || client.clientAuthMethod === 'none',
    },
    // Refresh tokens whenever the client may use refresh_token: no offline_access / prompt=consent needed.
    async issueRefreshToken(ctx, client) { return client.grantTypeAllowed('refresh_token'); },
    // Tokens live on when the login session goes away (revoke-all?sessions=1 drops sessions only).
    async expiresWithSession() { return false; },
    // false here, not the library default (which rotates for public clients always).
    rotateRefreshToken: () => opts.rotate,
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const accountId = oidc.session.accountId;
      const clientId = oidc.client.clientId;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (!grant || grant.accountId !== accountId || grant.clientId !== clientId) {
        grant = new oidc.provider.Grant({ accountId, clientId });
      }
      grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
      await grant.save();
      return grant;
    },
    ttl: {
      AccessToken: () => opts.accessTtl,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: () => opts.refreshTtl,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><body><h1>oops</h1><pre>${JSON.stringify(out, null, 2)
        .replace(/[<>&]/g, (c) => `&#${c.charCodeAt(0)};`)}</pre></body></html>`;
    },
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    if (req.destroyed && !req.complete) {
      reject(new Error('the client went away mid-request'));
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
    // A client that dies after its headers and before the end of its body (SIGKILL in the crash
    // test) gets neither 'end' nor always 'error': without this the request would hang here.
    req.on('close', () => { if (!req.complete) reject(new Error('the client went away mid-request')); });
  });
}

function json(ctx, status, body) {
  ctx.status = status;
  ctx.set('Cache-Control', 'no-store');
  ctx.type = 'application/json';
  ctx.body = JSON.stringify(body);
}

function countGrantType(grantType) {
  if (grantType === 'authorization_code') stats.authorizationCode += 1;
  else if (grantType === 'refresh_token') stats.refreshToken += 1;
  else stats.otherGrantType += 1;
}

function defaultErrorCode(status) {
  if (status === 500) return 'server_error';
  if (status >= 500) return 'temporarily_unavailable';
  if (status === 401) return 'invalid_client';
  return 'invalid_request';
}

async function testControl(ctx) {
  const route = `${ctx.method} ${ctx.path}`;
  const q = ctx.query;
  switch (route) {
    case 'GET /__test/stats':
      return json(ctx, 200, stats);
    case 'POST /__test/reset-stats':
      stats = { ...emptyStats(), tokenInFlight: stats.tokenInFlight };
      return json(ctx, 200, stats);
    case 'POST /__test/revoke-all': {
      const dropped = revokeAll({ sessions: ['1', 'true', 'yes'].includes(q.sessions) });
      log('revoke-all', dropped);
      return json(ctx, 200, { dropped });
    }
    case 'POST /__test/drop-access-tokens': {
      let dropped = 0;
      for (const [k, entry] of store) {
        if (entry.model === 'AccessToken') { store.delete(k); dropped += 1; }
      }
      log('drop-access-tokens', dropped);
      return json(ctx, 200, { dropped });
    }
    case 'POST /__test/delay-token': {
      const ms = Number(q.ms ?? 0);
      if (!Number.isFinite(ms) || ms < 0) return json(ctx, 400, { error: 'ms must be >= 0' });
      tokenDelayMs = ms;
      return json(ctx, 200, { delayMs: tokenDelayMs });
    }
    case 'POST /__test/fail-token': {
      const status = Number(q.status ?? 503);
      const count = Number(q.count ?? 1);
      if (!Number.isInteger(status) || status < 400 || status > 599) return json(ctx, 400, { error: 'status must be 400..599' });
      if (!Number.isInteger(count) || count < 0) return json(ctx, 400, { error: 'count must be >= 0' });
      failToken = { status, count, error: q.error || undefined };
      return json(ctx, 200, failToken);
    }
    case 'POST /__test/stated-expires-in': {
      if (q.s === undefined || q.s === '') {
        statedExpiresIn = undefined;
      } else {
        const n = Number(q.s);
        if (!Number.isInteger(n) || n < 0) return json(ctx, 400, { error: 's must be a whole number >= 0' });
        statedExpiresIn = n;
      }
      return json(ctx, 200, { statedExpiresIn: statedExpiresIn ?? null });
    }
    case 'GET /__test/refreshes': {
      const since = Number(q.since ?? 0);
      return json(ctx, 200, { seq: refreshLog.length, refreshes: refreshLog.filter((r) => r.seq > since) });
    }
    case 'GET /__test/config':
      return json(ctx, 200, {
        ...opts, tokenDelayMs, failToken, statedExpiresIn, clients: clients.map((c) => c.client_id),
      });
    default:
      return json(ctx, 404, { error: `no test-control route ${route}` });
  }
}

function basicClientId(authorization) {
  const m = /^basic\s+(\S+)$/i.exec(authorization ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  try {
    return decodeURIComponent((i === -1 ? decoded : decoded.slice(0, i)).replace(/\+/g, '%20'));
  } catch {
    return undefined;
  }
}

// oidc-provider 9 accepts client_secret_basic and client_secret_post interchangeably for a client
// registered with either. Unless --lenient-client-auth, insist on the registered one, so that a
// client sending its secret the wrong way fails here as it would at a strict provider.
function clientAuthMismatch(ctx, params) {
  if (opts.lenientClientAuth) return undefined;
  const viaBasic = basicClientId(ctx.get('authorization'));
  const viaPost = params.has('client_secret');
  const clientId = viaBasic ?? params.get('client_id');
  const client = clients.find((c) => c.client_id === clientId);
  if (!client || (viaBasic !== undefined && viaPost)) return undefined; // both: the provider says invalid_request
  const registered = client.token_endpoint_auth_method;
  if (registered === 'client_secret_basic' && viaPost && viaBasic === undefined) {
    return `client ${clientId} is registered for client_secret_basic but sent client_secret in the body`;
  }
  if (registered === 'client_secret_post' && viaBasic !== undefined) {
    return `client ${clientId} is registered for client_secret_post but used HTTP Basic authentication`;
  }
  return undefined;
}

const CLIENT_AUTH_PATHS = new Set(['/token', '/token/revocation', '/token/introspection']);

// Koa middleware in front of the provider's router.
async function testMiddleware(ctx, next) {
  if (ctx.path.startsWith('/__test/')) return testControl(ctx);

  const isToken = ctx.path === '/token' && ctx.method === 'POST';
  if (!isToken) return handle(ctx, next, false);
  stats.tokenRequests += 1;
  stats.tokenInFlight += 1;
  try {
    // The request is read in full first and the delay comes after, as at a slow server: a
    // client that goes away meanwhile does not stop its refresh from being processed.
    const params = await readForm(ctx);
    if (tokenDelayMs > 0) await new Promise((r) => { setTimeout(r, tokenDelayMs); });
    return await handle(ctx, next, true, params);
  } finally {
    stats.tokenInFlight -= 1;
  }
}

// Records a refresh_token grant's outcome (see refreshLog).
function recordRefresh(ctx, params) {
  const presented = tokenHash(params?.get('refresh_token') ?? '');
  const ok = ctx.status === 200 && ctx.body && typeof ctx.body === 'object';
  const issued = ok && ctx.body.refresh_token ? tokenHash(ctx.body.refresh_token) : null;
  let outcome;
  if (ok) {
    outcome = issued && issued !== presented ? 'rotated' : 'kept';
    if (outcome === 'rotated') {
      rotatedAway.add(presented);
      stats.refreshRotated += 1;
    }
  } else if (rotatedAway.has(presented)) {
    outcome = 'reuse';
    stats.refreshReuse += 1;
  } else {
    outcome = 'error';
  }
  refreshLog.push({
    seq: refreshLog.length + 1, at: Date.now(), presented, issued, status: ctx.status, outcome,
  });
}

async function readForm(ctx) {
  if (ctx.method === 'POST' && CLIENT_AUTH_PATHS.has(ctx.path) && ctx.is('application/x-www-form-urlencoded')) {
    // Read the form here (to count grant_type and check the client auth method) and hand it to the
    // provider as req.body, which it accepts (it logs one warning about an "already parsed request body").
    const raw = await readBody(ctx.req);
    ctx.req.body = Buffer.from(raw, 'utf8');
    return new URLSearchParams(raw);
  }
  return undefined;
}

async function handle(ctx, next, isToken, readParams) {
  const params = isToken ? readParams : await readForm(ctx);

  if (isToken) {
    const grantType = params?.get('grant_type') ?? undefined;
    countGrantType(grantType);
    if (failToken.count > 0) {
      failToken.count -= 1;
      stats.tokenErrors += 1;
      stats.injectedFailures += 1;
      const error = failToken.error || defaultErrorCode(failToken.status);
      log(`POST /token grant_type=${grantType} -> injected ${failToken.status} ${error}`);
      return json(ctx, failToken.status, {
        error, error_description: `injected failure (HTTP ${failToken.status}) from /__test/fail-token`,
      });
    }
  }

  const mismatch = params && clientAuthMismatch(ctx, params);
  if (mismatch) {
    if (isToken) stats.tokenErrors += 1;
    log(`POST ${ctx.path} -> 401 invalid_client: ${mismatch}`);
    return json(ctx, 401, { error: 'invalid_client', error_description: mismatch });
  }

  if (ctx.path === '/token/revocation' && ctx.method === 'POST') stats.revocations += 1;
  else if (ctx.path === '/me') stats.userinfo += 1;
  else if (ctx.path === '/auth') stats.authorizations += 1;
  else if (ctx.path.startsWith('/interaction/') && ctx.method === 'POST') stats.logins += 1;

  try {
    await next();
  } finally {
    if (isToken) {
      if (ctx.status === 200) stats.tokenSuccess += 1; else stats.tokenErrors += 1;
      if (params?.get('grant_type') === 'refresh_token') recordRefresh(ctx, params);
      if (ctx.status === 200 && statedExpiresIn !== undefined && ctx.body && typeof ctx.body === 'object') {
        ctx.body = { ...ctx.body, expires_in: statedExpiresIn };
      }
    }
    log(`${ctx.method} ${ctx.url} -> ${ctx.status}${ctx.status >= 300 && ctx.status < 400 ? ` ${ctx.response.get('Location')}` : ''}`
      + `${isToken ? ` grant_type=${params?.get('grant_type')}` : ''}${ctx.status >= 400 && ctx.body?.error ? ` ${ctx.body.error}` : ''}`);
  }
  return undefined;
}

// ---------------------------------------------------------------- start

const server = http.createServer();
server.listen(opts.port, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration());
  provider.use(testMiddleware);
  provider.on('grant.success', () => { stats.grantSuccess += 1; });
  provider.on('grant.error', (ctx, err) => {
    stats.grantError += 1;
    log('grant.error', err.error, err.error_description, err.error_detail ?? '');
  });
  provider.on('server_error', (ctx, err) => { console.error('[oidc-test] server_error', err); });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});
server.on('error', (err) => { console.error(`server.mjs: ${err.message}`); process.exit(1); });

function shutdown(why) {
  log(`stopping (${why})`);
  server.closeAllConnections?.();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

// Exit when the parent closes our stdin (e.g. a Rust test holding Stdio::piped() dies). Only for a
// pipe or socket: a background job in a script gets /dev/null, which is at EOF immediately.
if (!opts.ignoreStdin) {
  let watch = false;
  try {
    const st = fs.fstatSync(0);
    watch = st.isFIFO() || st.isSocket();
  } catch { /* no stdin at all */ }
  if (watch) {
    process.stdin.on('end', () => shutdown('stdin closed'));
    process.stdin.on('error', () => shutdown('stdin error'));
    process.stdin.resume();
  }
}
