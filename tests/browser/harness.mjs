// Starts the real pieces for the browser tests: the OAuth test server (tests/oidc), an
// `akhrot serve` with its own data and config directories, and Debian's Chromium through
// playwright-core. Run inside scripts/with-keyring (the vault's key lives in a real keyring).

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, '../..');
export const artifacts = join(here, 'artifacts');
mkdirSync(artifacts, { recursive: true });

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const BIN = process.env.AKHROT_BIN || join(root, 'target/debug/akhrot');

/** Resolves with the first `n` stdout lines of `child`, or rejects after `ms`. */
function firstLines(child, n, ms, what) {
  return new Promise((ok, fail) => {
    const lines = [];
    const rl = createInterface({ input: child.stdout });
    const timer = setTimeout(() => fail(new Error(`${what} did not start within ${ms} ms`)), ms);
    rl.on('line', (l) => {
      lines.push(l);
      if (lines.length === n) {
        clearTimeout(timer);
        ok(lines);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`${what} exited (${code}) before it was ready`));
    });
  });
}

/** The OAuth 2.0 / OIDC test server (node-oidc-provider). */
export async function startOidc() {
  const script = join(root, 'tests/oidc/server.mjs');
  if (!existsSync(join(root, 'tests/oidc/node_modules/oidc-provider'))) {
    throw new Error('run `npm ci --prefix tests/oidc` first (scripts/test does)');
  }
  const child = spawn(process.execPath, [script, '--port', '0'], { stdio: ['pipe', 'pipe', 'ignore'] });
  const [line] = await firstLines(child, 1, 30000, 'the OAuth test server');
  const { issuer } = JSON.parse(line);
  return { issuer, stop: () => child.kill() };
}

/** A providers.d entry for the OIDC test server (like the Rust harness's `provider_toml`). */
export function providerToml(code, issuer) {
  return `[providers.${code}]
name = "Test IdP"
auth = "oauth2"
authorize_url = "${issuer}/auth"
token_url = "${issuer}/token"
revoke_url = "${issuer}/token/revocation"
userinfo_url = "${issuer}/me"
account_field = "email"
scopes = ["openid", "email", "profile", "offline_access"]
token_auth = "none"
description = "The OAuth test server of Akhrot's own tests"

[[providers.${code}.services]]
code = "userinfo"
name = "User info"
base_url = "${issuer}"
`;
}

/** `akhrot serve` on a free port with fresh directories. */
export async function startAkhrot({ providers = {}, args = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'akhrot-browser-'));
  const data = join(dir, 'data');
  const config = join(dir, 'config');
  mkdirSync(join(config, 'providers.d'), { recursive: true });
  for (const [name, toml] of Object.entries(providers)) {
    writeFileSync(join(config, 'providers.d', `${name}.toml`), toml);
  }
  const child = spawn(BIN, ['serve', '--port', '0', '--data-dir', data, '--config-dir', config, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', AKHROT_NO_BROWSER: '1' },
  });
  const [ready, ui] = await firstLines(child, 2, 30000, 'akhrot serve');
  const base = ready.match(/serving on (http:\/\/\S+)/)[1];
  // Not a terminal: serve names `akhrot ui` instead of printing a sign-in link to a log.
  if (!/web UI: run `akhrot ui`/.test(ui)) throw new Error(`serve printed a sign-in link to a pipe: ${ui}`);
  const admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();

  async function call(method, path, { bearer = admin, body } = {}) {
    const r = await fetch(base + path, {
      method,
      headers: {
        ...(bearer ? { Authorization: `Bearer ${bearer}` } : {}),
        ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    let json;
    try { json = JSON.parse(text); } catch { json = text; }
    return { status: r.status, json };
  }

  const first = await fetch(base + '/admin/ui-link', {
    method: 'POST',
    headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json' },
    body: '{}',
  });
  const link = (await first.json()).data.url;

  return {
    base,
    link,
    data,
    config,
    call,
    /** An admin call that must succeed; its `data`. */
    async admin(method, path, body) {
      const r = await call(method, path, { body });
      if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
      return r.json.data;
    },
    /** A fresh one-time sign-in link. */
    async newLink() {
      return (await this.admin('POST', '/admin/ui-link', {})).url;
    },
    stop() {
      child.kill('SIGTERM');
      return new Promise((ok) => child.on('exit', ok));
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/**
 * A signed-in page, collecting every console error/warning and uncaught exception so a test can
 * assert there were none.
 */
export async function signedInPage(browser, akhrot, { colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ colorScheme, viewport: { width: 1280, height: 820 } });
  const page = await context.newPage();
  const problems = [];
  // Only Akhrot's own pages count: the authorization server's sign-in form is not ours.
  const ours = (p) => p.url().startsWith(akhrot.base);
  const watch = (p) => {
    p.on('console', (m) => {
      if ((m.type() === 'error' || m.type() === 'warning') && ours(p)) {
        problems.push(`${m.type()}: ${m.text()} (${p.url()})`);
      }
    });
    p.on('pageerror', (e) => {
      if (ours(p)) problems.push(`pageerror: ${e.message} (${p.url()})`);
    });
  };
  watch(page);
  context.on('page', watch);
  await page.goto(await akhrot.newLink());
  await page.waitForSelector('[data-testid="page-connections"]');
  return { context, page, problems };
}

export async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: false, animations: 'disabled' });
}
