// The web UI in real headless Chromium against a real `akhrot serve`, a real keyring and a real
// OAuth server. Every test fails on any console error or uncaught exception in the page.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startOidc, startAkhrot, providerToml, launchBrowser, signedInPage, shot } from './harness.mjs';

let oidc;
let akhrot;
let browser;

before(async () => {
  oidc = await startOidc();
  akhrot = await startAkhrot({
    providers: { testidp: providerToml('testidp', oidc.issuer) },
    args: ['--approval-timeout', '60'],
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await akhrot?.stop();
  oidc?.stop();
});

/**
 * Opens a signed-in page, runs `fn`, and fails on any console problem but those `expected`
 * (regular expressions for the refusals the test provokes on purpose).
 */
async function withPage(fn, { expected = [], ...opts } = {}) {
  const s = await signedInPage(browser, akhrot, opts);
  try {
    await fn(s.page, s.context);
    // Let late errors (event stream, timers) surface.
    await s.page.waitForTimeout(300);
    const unexpected = s.problems.filter((p) => !expected.some((re) => re.test(p)));
    assert.deepEqual(unexpected, [], 'no console errors or warnings');
  } finally {
    await s.context.close();
  }
}

/** An agent's token request, running while the test drives the UI. */
function agentFetch(key, body) {
  return akhrot.call('POST', '/tokens/fetch', { bearer: key, body });
}

test('the sign-in link works once; without a session the UI says how to sign in', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  const link = await akhrot.newLink();
  await page.goto(link);
  await page.waitForSelector('[data-testid="page-connections"]');
  assert.match(page.url(), /\/ui\/(#.*)?$/, 'the code is gone from the address bar');
  const again = await page.goto(link);
  assert.equal(again.status(), 403);
  assert.match(await page.textContent('body'), /akhrot ui/);
  // A browser that never signed in gets the signed-out screen, not data.
  const other = await browser.newContext();
  const p2 = await other.newPage();
  p2.on('pageerror', (e) => problems.push(e.message));
  p2.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text()); });
  await p2.goto(`${akhrot.base}/ui/`);
  await p2.waitForSelector('[data-testid="signed-out"]');
  assert.match(await p2.textContent('[data-testid="signed-out"]'), /akhrot ui/);
  assert.deepEqual(problems, []);
  await other.close();
  await context.close();
});

test('a blocked token request appears in Approvals; Allow once completes it, Deny refuses it', async () => {
  const { key } = await akhrot.admin('POST', '/admin/keys', { name: 'research-bot' });
  await akhrot.admin('POST', '/admin/connections', { provider: 'openai', fields: { apiKey: 'sk-browser-test-1' } });
  await withPage(async (page) => {
    await page.click('a[href="#/approvals"]');
    await page.waitForSelector('[data-testid="page-approvals"]');
    const waiting = agentFetch(key, { provider: 'openai', reason: 'summarise the quarterly report' });
    const card = page.locator('[data-testid="approval-card"]');
    await card.first().waitFor();
    const text = await card.first().textContent();
    assert.match(text, /research-bot/);
    assert.match(text, /summarise the quarterly report/);
    assert.match(text, /OpenAI/);
    // The OS's view of the caller: this test process (node), shown apart from the key name,
    // verified: one process holds the connection (unless a process of this user hides its
    // connections from the lookup, as ssh-agent does on a desktop; the note then says so).
    const peer = card.first().locator('[data-testid="peer"]');
    assert.match(await peer.textContent(), /node/);
    if ((await peer.getAttribute('data-verified')) === 'true') {
      assert.match(await peer.textContent(), /Verified by the OS/);
    } else {
      assert.match(await peer.locator('[data-testid="peer-note"]').textContent(), /hide/);
    }
    await page.waitForSelector('[data-testid="approvals-badge"]');
    assert.equal((await page.textContent('[data-testid="approvals-badge"]')).trim(), '1');
    await shot(page, 'approvals');
    await card.first().locator('[data-testid="allow-once"]').click();
    const answered = await waiting;
    assert.equal(answered.status, 200, JSON.stringify(answered.json));
    assert.equal(answered.json.data.accessToken, 'sk-browser-test-1');
    await card.first().waitFor({ state: 'detached' });

    const denied = agentFetch(key, { provider: 'openai', reason: 'second try' });
    await card.first().waitFor();
    await card.first().locator('[data-testid="deny"]').click();
    const d = await denied;
    assert.equal(d.status, 403);
    assert.equal(d.json.error.code, 'APPROVAL_DENIED');
    await page.waitForSelector('[data-testid="approvals-badge"]', { state: 'hidden' });
  });
});

test('creating an agent key shows it once, and the key works', async () => {
  await withPage(async (page) => {
    await page.click('a[href="#/agents"]');
    await page.waitForSelector('[data-testid="page-agents"]');
    await page.fill('[data-testid="create-agent"] [name="agentName"]', 'ui-made-agent');
    await page.click('[data-testid="create-agent"] button[type="submit"]');
    await page.waitForSelector('[data-testid="new-key-dialog"]');
    const key = (await page.inputValue('[data-testid="new-key"]').catch(() => null))
      ?? (await page.textContent('[data-testid="new-key"]'));
    assert.match(key.trim(), /^akhrot_[0-9a-z]{10}_[0-9a-f]{64}$/);
    await shot(page, 'agents-new-key');
    const summary = await akhrot.call('GET', '/ai/context/summary', { bearer: key.trim() });
    assert.equal(summary.status, 200);
    await page.keyboard.press('Escape');
    await page.waitForSelector('[data-testid="new-key-dialog"]', { state: 'hidden' });
    await page.waitForSelector('[data-testid="agent-ui-made-agent"]');
    await shot(page, 'agents');
  });
});

test('adding an API key from Connections stores it', async () => {
  await withPage(async (page) => {
    await page.fill('[data-testid="provider-search"]', 'anthropic');
    await page.click('[data-testid="add-anthropic"]');
    const dialog = page.locator('[data-testid="add-dialog"]');
    await dialog.waitFor();
    const secret = 'sk-ant-browser-test-secret';
    await dialog.locator('input[name="apiKey"]').fill(secret);
    assert.equal(await dialog.locator('input[name="apiKey"]').getAttribute('type'), 'password');
    await dialog.locator('button[type="submit"]').click();
    await page.waitForSelector('[data-testid="connection-anthropic"]');
    const conns = await akhrot.admin('GET', '/admin/connections');
    assert.ok(conns.some((c) => c.provider === 'anthropic'), JSON.stringify(conns));
    const token = await akhrot.admin('POST', '/admin/token', { provider: 'anthropic' });
    assert.equal(token.accessToken, secret);
    assert.ok(!(await page.content()).includes(secret), 'the secret is not left in the page');
  });
});

test('connecting a custom OAuth provider through the real authorization server', async () => {
  await withPage(async (page, context) => {
    await page.fill('[data-testid="provider-search"]', 'Test IdP');
    const card = page.locator('[data-testid="provider-testidp"]');
    await card.waitFor();
    assert.match(await card.textContent(), /No client configured/i);
    await page.click('[data-testid="client-testidp"]');
    const dialog = page.locator('[data-testid="client-dialog"]');
    await dialog.waitFor();
    assert.match(await dialog.textContent(), new RegExp(`${akhrot.base}/oauth/callback`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    await dialog.locator('input[name="clientId"]').fill('public-client');
    await shot(page, 'oauth-client');
    await dialog.locator('button[type="submit"]').click();
    await dialog.waitFor({ state: 'hidden' });
    await page.waitForSelector('[data-testid="connect-testidp"]');

    const popup = context.waitForEvent('page');
    await page.click('[data-testid="connect-testidp"]');
    const consent = await popup;
    await consent.waitForLoadState();
    assert.ok(consent.url().startsWith(oidc.issuer), consent.url());
    // The authorization server's own sign-in form (devInteractions).
    await consent.fill('input[name="login"]', 'ada');
    await consent.fill('input[name="password"]', 'correct horse');
    await Promise.all([consent.waitForURL(/\/oauth\/callback/), consent.click('button[type="submit"]')]);
    assert.match(await consent.textContent('body'), /Connected/);
    await consent.close();
    await page.waitForSelector('[data-testid="connection-testidp"]');
    assert.match(await page.textContent('[data-testid="connection-testidp"]'), /ada@example\.test/);
    const token = await akhrot.admin('POST', '/admin/token', { provider: 'testidp' });
    const me = await fetch(`${oidc.issuer}/me`, { headers: { Authorization: `Bearer ${token.accessToken}` } });
    assert.equal(me.status, 200, 'the token the UI connection got is live at the server');
    await page.fill('[data-testid="provider-search"]', '');
    await shot(page, 'connections');
  });
});

test('client settings and field choices: a Microsoft tenant from the client form, a Mailgun region from a list', async () => {
  await withPage(async (page) => {
    await page.fill('[data-testid="provider-search"]', 'microsoft');
    await page.click('[data-testid="client-microsoft"]');
    const dialog = page.locator('[data-testid="client-dialog"]');
    await dialog.waitFor();
    const tenant = dialog.locator('[data-testid="setting-tenant"]');
    assert.equal(await tenant.getAttribute('placeholder'), 'common');
    assert.match(await dialog.textContent(), /AADSTS|single-tenant|tenant id/i);
    assert.ok((await dialog.locator('[data-testid="provider-sources"] a').count()) > 0, 'the docs the entry follows are linked');
    await dialog.locator('input[name="clientId"]').fill('ms-client');
    // A tenant that is not a plain name is refused in the dialog, and nothing is stored.
    await tenant.fill('evil.example/x');
    await dialog.locator('button[type="submit"]').click();
    await dialog.locator('.form-error').filter({ hasText: /tenant/ }).waitFor();
    await tenant.fill('contoso.onmicrosoft.com');
    await shot(page, 'client-settings');
    await dialog.locator('button[type="submit"]').click();
    await dialog.waitFor({ state: 'hidden' });
    const clients = await akhrot.admin('GET', '/admin/clients');
    const ms = clients.find((c) => c.provider === 'microsoft');
    assert.equal(ms.settings[0].value, 'contoso.onmicrosoft.com');

    await page.fill('[data-testid="provider-search"]', 'mailgun');
    await page.click('[data-testid="add-mailgun"]');
    const add = page.locator('[data-testid="add-dialog"]');
    await add.waitFor();
    const region = add.locator('select[name="region"]');
    assert.equal(await region.inputValue(), 'us', 'the default is chosen');
    await region.selectOption('eu');
    await add.locator('input[name="apiKey"]').fill('key-browser-mailgun');
    await add.locator('input[name="domain"]').fill('mg.example.eu');
    await add.locator('button[type="submit"]').click();
    await page.waitForSelector('[data-testid="connection-mailgun"]');
    const token = await akhrot.admin('POST', '/admin/token', { provider: 'mailgun' });
    assert.equal(token.region, 'eu');
    await page.fill('[data-testid="provider-search"]', '');
  }, { expected: [/status of 400 \(Bad Request\)/] });
});

test('activity shows the audit log and filters it; settings pause every agent', async () => {
  const { key } = await akhrot.admin('POST', '/admin/keys', { name: 'paused-bot', allowAll: true });
  await withPage(async (page) => {
    await page.click('a[href="#/activity"]');
    await page.waitForSelector('[data-testid="page-activity"]');
    const table = page.locator('[data-testid="audit-table"]');
    await table.waitFor();
    assert.match(await table.textContent(), /research-bot/);
    await page.selectOption('[data-testid="filter-action"]', 'key');
    await page.waitForFunction(() => !document.querySelector('[data-testid="audit-table"]').textContent.includes('approval'));
    await shot(page, 'activity');
    // A new entry arrives live (no reload).
    await page.selectOption('[data-testid="filter-action"]', '');
    await akhrot.admin('POST', '/admin/keys', { name: 'live-entry-bot' });
    await page.waitForFunction(() => document.querySelector('[data-testid="audit-table"]').textContent.includes('live-entry-bot'));

    await page.click('a[href="#/settings"]');
    await page.waitForSelector('[data-testid="page-settings"]');
    await page.check('[data-testid="pause-toggle"]');
    await page.waitForSelector('text=Agents are paused');
    const r = await agentFetch(key, { provider: 'openai' });
    assert.equal(r.status, 403);
    assert.match(r.json.error.message, /paused/);
    await shot(page, 'settings-paused');
    await page.uncheck('[data-testid="pause-toggle"]');
    await page.waitForSelector('text=Agents are paused', { state: 'hidden' });
    const ok = await agentFetch(key, { provider: 'openai' });
    assert.equal(ok.status, 200);
  });
});

test('dark theme and keyboard navigation', async () => {
  await withPage(async (page) => {
    await shot(page, 'connections-dark');
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g).map(Number);
    assert.ok(r + g + b < 200, `dark background, got ${bg}`);
    // Tab reaches the navigation, Enter follows it.
    for (let i = 0; i < 15; i++) {
      await page.keyboard.press('Tab');
      const href = await page.evaluate(() => document.activeElement?.getAttribute('href'));
      if (href === '#/agents') break;
    }
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('href')), '#/agents');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-testid="page-agents"]');
    await shot(page, 'agents-dark');
  }, { colorScheme: 'dark' });
});

test('a proxied call shows its method and URL in Approvals; the Agents page sets proxy-only', async () => {
  const { key } = await akhrot.admin('POST', '/admin/keys', { name: 'proxy-bot' });
  await akhrot.admin('POST', '/admin/connections', { provider: 'openai', fields: { apiKey: 'sk-browser-proxy' } });
  await withPage(async (page) => {
    await page.click('a[href="#/approvals"]');
    await page.waitForSelector('[data-testid="page-approvals"]');
    // Denied before anything is sent, so no provider needs to be reachable.
    const waiting = akhrot.call('GET', '/proxy/openai/models?limit=5', { bearer: key });
    const card = page.locator('[data-testid="approval-card"]');
    await card.first().waitFor();
    assert.equal(
      (await card.first().locator('[data-testid="approval-request"]').textContent()).trim(),
      'GET https://api.openai.com/v1/models?limit',
    );
    assert.match(await card.first().textContent(), /proxy-bot/);
    assert.match(await card.first().locator('[data-testid="approval-proxy-note"]').textContent(), /never receives the token/);
    await shot(page, 'approvals-proxy');
    await card.first().locator('[data-testid="deny"]').click();
    const d = await waiting;
    assert.equal(d.status, 403);
    assert.equal(d.json.error.code, 'APPROVAL_DENIED');

    await page.click('a[href="#/agents"]');
    await page.waitForSelector('[data-testid="agent-proxy-bot"]');
    await page.selectOption('[data-testid="policy-provider-proxy-bot"]', 'openai');
    await page.selectOption('[data-testid="policy-mode-proxy-bot"]', 'proxy-only');
    await page.click('[data-testid="policy-set-proxy-bot"]');
    await page.waitForSelector('[data-testid="agent-proxy-bot"] [data-testid="policy-openai"]');
    assert.match(await page.textContent('[data-testid="agent-proxy-bot"] [data-testid="policy-openai"]'), /Proxy only/);

    // The denied call is in Activity under "Proxied calls", with its method and URL.
    await page.click('a[href="#/activity"]');
    await page.waitForSelector('[data-testid="page-activity"]');
    await page.selectOption('[data-testid="filter-action"]', 'proxy');
    await page.waitForFunction(() => document.querySelector('[data-testid="audit-table"]').textContent
      .includes('GET https://api.openai.com/v1/models?limit (denied by the user)'));
    assert.doesNotMatch(await page.textContent('[data-testid="audit-table"]'), /sk-browser-proxy|limit=5/);
  });
  const f = await akhrot.call('POST', '/tokens/fetch', { bearer: key, body: { provider: 'openai' } });
  assert.equal(f.status, 403);
  assert.equal(f.json.error.code, 'APPROVAL_DENIED');
  assert.match(f.json.error.message, /\/proxy\/openai\//);
});

test('a connection a forked decoy shares is shown as not verified, with every process on it', async () => {
  const { key } = await akhrot.admin('POST', '/admin/keys', { name: 'forking-bot' });
  await akhrot.admin('POST', '/admin/connections', { provider: 'openai', fields: { apiKey: 'sk-browser-fork' } });
  const { spawn } = await import('node:child_process');
  const port = new URL(akhrot.base).port;
  const body = JSON.stringify({ provider: 'openai', reason: 'forked' });
  // bash connects, starts `sleep` run as `claude` holding the same socket, then sends the
  // request itself (builtins only, so nothing else shares the socket).
  const script = `exec 3<>/dev/tcp/127.0.0.1/${port}
(exec -a claude sleep 30) &
until [ "$(cat /proc/$!/comm 2>/dev/null)" = sleep ]; do sleep 0.02; done
printf 'POST /tokens/fetch HTTP/1.1\\r\\nHost: 127.0.0.1:${port}\\r\\nAuthorization: Bearer %s\\r\\nContent-Type: application/json\\r\\nContent-Length: %s\\r\\nConnection: close\\r\\n\\r\\n%s' "$KEY" "\${#BODY}" "$BODY" >&3
while IFS= read -r -t 50 line <&3; do printf '%s\\n' "$line"; done
kill $(jobs -p) 2>/dev/null
exit 0`;
  const child = spawn('bash', ['-c', script], { env: { ...process.env, KEY: key, BODY: body }, stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const done = new Promise((r) => child.on('exit', r));
  await withPage(async (page) => {
    await page.click('a[href="#/approvals"]');
    const card = page.locator('[data-testid="approval-card"]');
    await card.first().waitFor();
    const peer = card.first().locator('[data-testid="peer"]');
    assert.equal(await peer.getAttribute('data-verified'), 'false');
    assert.match(await peer.locator('h4').textContent(), /Not verified/);
    assert.match(await peer.locator('[data-testid="peer-note"]').textContent(),
      /^2 processes share this connection; any of them may have sent the request/);
    assert.equal(await peer.locator('[data-testid="peer-process"]').count(), 2);
    const text = await peer.textContent();
    assert.match(text, /claude 30/);
    assert.match(text, new RegExp(`pid ${child.pid}`));
    assert.doesNotMatch(text, /Verified by the OS/);
    await shot(page, 'approvals-shared-connection');
    await card.first().locator('[data-testid="deny"]').click();
    await done;
    assert.match(out, /^HTTP\/1.1 403/);

    // Activity shows the same: both pids, not verified, and the note.
    await page.click('a[href="#/activity"]');
    await page.waitForSelector('[data-testid="page-activity"]');
    const details = page.locator('[data-testid="peer-details"][data-verified="false"]').first();
    await details.waitFor();
    assert.match(await details.locator('summary').textContent(), /^pids \d+, \d+ \(not verified\)$/);
    await details.locator('summary').click();
    assert.match(await details.textContent(), /2 processes share this connection/);
  });
});
