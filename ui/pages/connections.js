// Connections: what is connected, every catalog provider, and the dialogs to connect them.

import {
  h, clear, monogram, badge, emptyState, extLink, field, openDialog, confirmDialog, toast, toastError,
  busy, copyButton, fmt, icon, ICONS, pageHeader, formError, scopeChips,
} from '../dom.js';
import { api, seg, query } from '../api.js';
import { state, on, load, clientFor, providerByCode, baseUrl } from '../store.js';

const AUTH_LABEL = { oauth2: 'OAuth 2.0', api_key: 'API key', mtproto: 'Telegram (MTProto)' };
const DEEP_LINK = 'akhrot://oauth/callback';

export function mount(root) {
  let filter = '';
  const search = h('input', {
    type: 'search', class: 'search-input', placeholder: 'Search providers', autocomplete: 'off', spellcheck: 'false',
    'aria-label': 'Search providers by name or code', 'data-testid': 'provider-search',
  });
  const searchBox = h('div', { class: 'search' }, icon(ICONS.search), search);
  const connectedCount = h('span', { class: 'section-count' });
  const providerCount = h('span', { class: 'section-count' });
  const connectedList = h('div', { class: 'conn-list', 'data-testid': 'connected-list' });
  const grid = h('div', { class: 'provider-grid', 'data-testid': 'provider-grid' });

  root.append(
    h('div', { class: 'page-inner', 'data-testid': 'page-connections' },
      pageHeader('Connections', 'The accounts and keys agents can get tokens for. Secrets never leave the vault on this machine.', searchBox),
      h('section', { class: 'section', 'aria-labelledby': 'sec-connected' },
        h('h2', { class: 'section-title', id: 'sec-connected' }, 'Connected', connectedCount),
        connectedList),
      h('section', { class: 'section', 'aria-labelledby': 'sec-providers' },
        h('h2', { class: 'section-title', id: 'sec-providers' }, 'All providers', providerCount),
        grid)),
  );

  search.addEventListener('input', () => {
    filter = search.value.trim().toLowerCase();
    render();
  });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && search.value) {
      search.value = '';
      filter = '';
      render();
    }
  });

  const matches = (code, name) => !filter || code.toLowerCase().includes(filter) || String(name || '').toLowerCase().includes(filter);

  function render() {
    const conns = state.connections.filter((c) => matches(c.provider, (providerByCode(c.provider) || {}).name));
    connectedCount.textContent = state.connections.length ? String(state.connections.length) : '';
    if (!state.loaded.has('connections')) clear(connectedList, h('p', { class: 'loading' }, 'Loading…'));
    else if (state.connections.length === 0) {
      clear(connectedList, emptyState('Nothing is connected yet',
        'Pick a provider below. API-key providers only need the key; OAuth providers need your own OAuth client first ("OAuth client…"), then "Connect".'));
    } else if (conns.length === 0) {
      clear(connectedList, h('p', { class: 'muted small' }, 'No connection matches the search.'));
    } else clear(connectedList, conns.map(connectionCard));

    const providers = state.providers.filter((p) => matches(p.code, p.name));
    providerCount.textContent = state.providers.length ? String(state.providers.length) : '';
    if (!state.loaded.has('providers')) clear(grid, h('p', { class: 'loading' }, 'Loading providers…'));
    else if (providers.length === 0) {
      clear(grid, emptyState(`No provider matches “${search.value.trim()}”`,
        'Search by name or code (e.g. "google", "openai"). Providers of your own go in providers.d/*.toml in the config directory.'));
    } else clear(grid, providers.map(providerCard));
  }

  const offs = ['providers', 'connections', 'clients'].map((t) => on(t, render));
  render();
  return () => offs.forEach((off) => off());
}

/* ---------- cards ---------- */

function expiryText(c) {
  if (c.authType !== 'oauth2') return null;
  if (!c.expiresAt) return 'Access token without expiry';
  const ms = c.expiresAt * 1000;
  return ms > Date.now()
    ? `Access token valid until ${fmt.clock(c.expiresAt)} · refreshed when needed`
    : `Access token expired ${fmt.relative(ms)} · refreshed on next use`;
}

function connectionCard(c) {
  const p = providerByCode(c.provider) || { code: c.provider, name: c.provider, authType: c.authType, fields: [] };
  const needs = c.status === 'needs_reconnect';
  const fieldLabel = (name) => ((p.fields || []).find((f) => f.name === name) || {}).label || name;
  const publicFields = Object.entries(c.publicFields || {});
  const actions = [];
  if (p.authType === 'oauth2') {
    actions.push(h('button', {
      type: 'button', class: ['btn', 'btn-small', needs && 'btn-primary'], 'data-testid': `reconnect-${c.provider}`,
      onclick: () => startConnect(p, c.account),
    }, 'Reconnect'));
  } else if (needs) {
    actions.push(h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': `replace-${c.provider}`, onclick: () => openAddDialog(p, c.account) }, 'Replace key'));
  }
  actions.push(h('button', {
    type: 'button', class: 'btn btn-small btn-danger-quiet', 'data-testid': `disconnect-${c.provider}`,
    onclick: () => disconnect(p, c),
  }, 'Disconnect'));

  return h('article', { class: ['card', 'conn-card', needs && 'is-warn'], 'data-testid': `connection-${c.provider}`, 'data-account': c.account },
    h('div', { class: 'card-row' },
      monogram(p.code, p.name),
      h('div', { class: 'card-main' },
        h('h3', { class: 'card-title' }, p.name),
        needs
          ? h('p', { class: 'card-sub' }, badge('Needs reconnect', 'warn', { 'data-testid': `status-${c.provider}` }), ' ', h('span', { class: 'muted' }, c.account))
          : h('p', { class: 'card-sub', 'data-testid': `status-${c.provider}` }, 'Connected as ', h('strong', null, c.account))),
      h('div', { class: 'card-actions' }, actions)),
    h('div', { class: 'card-details' },
      scopeChips(c.scopes),
      publicFields.length
        ? h('dl', { class: 'kv kv-inline' }, publicFields.map(([k, v]) => [h('dt', null, fieldLabel(k)), h('dd', { class: 'code' }, v)]))
        : null,
      h('p', { class: 'muted small' },
        [expiryText(c), `${AUTH_LABEL[c.authType] || c.authType}`, `added ${fmt.dateTime(c.createdAt)}`].filter(Boolean).join(' · '))),
  );
}

function providerState(p) {
  const conns = state.connections.filter((c) => c.provider === p.code);
  if (conns.some((c) => c.status === 'needs_reconnect')) return ['Needs reconnect', 'warn'];
  if (conns.length === 1) return [`Connected as ${conns[0].account}`, 'ok'];
  if (conns.length > 1) return [`Connected as ${conns[0].account} +${conns.length - 1}`, 'ok'];
  if (p.authType === 'oauth2' && !(clientFor(p.code) || {}).configured && state.loaded.has('clients')) return ['No client configured', 'muted'];
  return ['Not connected', 'muted'];
}

function providerCard(p) {
  const [label, kind] = providerState(p);
  const actions = [];
  if (p.authType === 'oauth2') {
    const configured = (clientFor(p.code) || {}).configured;
    if (configured) {
      const connected = state.connections.some((c) => c.provider === p.code);
      actions.push(h('button', {
        type: 'button', class: ['btn', 'btn-small', !connected && 'btn-primary'], 'data-testid': `connect-${p.code}`,
        onclick: () => startConnect(p),
      }, connected ? 'Connect another' : 'Connect'));
    }
    actions.push(h('button', {
      type: 'button', class: ['btn', 'btn-small', !configured && 'btn-primary'], 'data-testid': `client-${p.code}`,
      onclick: () => openClientDialog(p),
    }, 'OAuth client…'));
  } else {
    actions.push(h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': `add-${p.code}`, onclick: () => openAddDialog(p) }, icon(ICONS.plus), 'Add key'));
  }
  const docs = extLink(p.docsUrl, 'Docs', { class: 'ext small', 'data-testid': `docs-${p.code}`, 'aria-label': `${p.name} documentation (opens in a new tab)` });

  return h('article', { class: ['card', 'provider-card', kind === 'ok' && 'is-connected', kind === 'warn' && 'is-warn'], 'data-testid': `provider-${p.code}` },
    h('div', { class: 'card-row' },
      monogram(p.code, p.name),
      h('div', { class: 'card-main' },
        h('h3', { class: 'card-title' }, p.name),
        h('p', { class: 'card-sub muted' }, h('span', { class: 'code' }, p.code), ' · ', AUTH_LABEL[p.authType] || p.authType, p.custom ? ' · custom' : ''))),
    p.description ? h('p', { class: 'provider-desc' }, p.description) : null,
    h('div', { class: 'provider-foot' },
      badge(label, kind, { 'data-testid': `state-${p.code}` }),
      h('div', { class: 'card-actions' }, actions, docs)));
}

/* ---------- disconnect ---------- */

async function disconnect(p, c) {
  const ok = await confirmDialog({
    title: `Disconnect ${p.name}?`,
    message: [
      `Agents will no longer get tokens for ${p.name} (${c.account}).`,
      p.authType === 'oauth2' ? `Akhrot also revokes the token at ${p.name} where the provider allows it.` : 'The stored key is deleted from the vault; it stays valid at the provider until you revoke it there.',
    ],
    confirmLabel: 'Disconnect',
    danger: true,
  });
  if (!ok) return;
  try {
    const r = await api.del(`/admin/connections/${seg(p.code)}${query({ account: c.account })}`);
    toast(`Disconnected ${p.name} (${c.account})${r.revokedAtProvider ? ' and revoked its token at the provider' : ''}.`, 'success');
  } catch (err) {
    toastError(err);
  }
  load('connections', 'status').catch(toastError);
}

/* ---------- OAuth connect ---------- */

async function startConnect(p, account) {
  let session;
  try {
    session = await api.post('/admin/sessions', account ? { provider: p.code, account } : { provider: p.code });
  } catch (err) {
    if (err.code === 'CLIENT_NOT_CONFIGURED') {
      toast(err.message, 'error');
      openClientDialog(p);
    } else toastError(err);
    return;
  }
  window.open(session.url, '_blank', 'noopener');

  const status = h('p', { class: 'connect-status', 'data-testid': 'connect-status', role: 'status' },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Waiting for you to finish in the browser…');
  const closeBtn = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  let done = false;
  let timer = null;
  const d = openDialog({
    title: `Connect ${p.name}`,
    testid: 'connect-dialog',
    body: [
      h('div', { class: 'connect-hero' }, monogram(p.code, p.name, 'lg')),
      h('p', null, `Finish connecting in the browser tab that opened: sign in to ${p.name} and approve access. This window notices by itself when you are done.`),
      h('p', null, 'No tab opened, or closed it? ',
        h('a', { href: session.url, target: '_blank', rel: 'noopener', 'data-testid': 'consent-link' }, `Open the ${p.name} consent page`),
        ' again.'),
      status,
      h('p', { class: 'hint' }, `The link works for 10 minutes. ${p.name} sends you back to ${session.redirectUri}.`),
    ],
    actions: [closeBtn],
    focus: (dlg) => dlg.querySelector('[data-testid="consent-link"]'),
    onClose: () => {
      done = true;
      clearTimeout(timer);
      offAudit();
    },
  });
  closeBtn.addEventListener('click', () => d.close());

  const finish = (text, kind) => {
    done = true;
    clearTimeout(timer);
    status.replaceChildren(text);
    status.classList.add(kind === 'error' ? 'is-error' : 'is-ok');
    closeBtn.textContent = 'Close';
  };

  async function poll() {
    if (done) return;
    timer = null;
    try {
      const s = await api.get(`/admin/sessions/${seg(session.sessionId)}`);
      if (done) return;
      if (s.status === 'completed') {
        done = true;
        d.close();
        toast(`Connected ${p.name} as ${s.account || 'default'}.`, 'success');
        load('connections', 'status').catch(toastError);
        return;
      }
      if (s.status === 'failed') return finish(`${p.name} did not connect: ${s.error || 'the provider refused'}. Close this and try again.`, 'error');
      if (s.status === 'expired') return finish('The consent link expired (after 10 minutes). Close this and press Connect again.', 'error');
    } catch (err) {
      if (err.code === 'UNAUTHORIZED') return;
      if (err.code === 'SESSION_NOT_FOUND' || err.status === 404) return finish('This consent session is gone (Akhrot restarted?). Close this and press Connect again.', 'error');
    }
    if (!done) timer = setTimeout(poll, 1000);
  }
  // The audit "connect" event arrives as soon as the callback completes: check at once.
  const offAudit = on('audit', (e) => {
    if (!done && e.action === 'connect' && e.provider === p.code) {
      clearTimeout(timer);
      poll();
    }
  });
  timer = setTimeout(poll, 1000);
}

/* ---------- OAuth client dialog ---------- */

function openClientDialog(p) {
  const c = clientFor(p.code) || {};
  const loopbackUri = c.redirectUri && !c.redirectUri.startsWith('akhrot:') ? c.redirectUri : `${baseUrl()}/oauth/callback`;
  const current = (c.redirectUri || '').startsWith('akhrot:') ? 'deep_link' : 'loopback';
  const err = formError();

  const clientId = h('input', { name: 'clientId', required: true, autocomplete: 'off', spellcheck: 'false', value: c.clientId || '', 'data-testid': 'client-id' });
  const secret = h('input', { name: 'clientSecret', type: 'password', autocomplete: 'new-password', spellcheck: 'false', 'data-testid': 'client-secret' });
  const uri = h('code', { class: 'uri-box', id: 'redirect-uri-field', 'data-testid': 'redirect-uri' }, current === 'deep_link' ? DEEP_LINK : loopbackUri);
  const radio = (value, label, hint) => h('label', { class: 'radio' },
    h('input', {
      type: 'radio', name: 'redirect', value, checked: current === value, 'data-testid': `redirect-${value}`,
      onchange: () => { uri.textContent = value === 'deep_link' ? DEEP_LINK : loopbackUri; },
    }),
    h('span', null, h('span', { class: 'radio-label' }, label), h('span', { class: 'hint' }, hint)));
  // Client settings (Microsoft's tenant, GitLab's server): empty means the default.
  const settings = (c.settings || []).map((st) => ({
    st,
    input: h('input', {
      name: `setting-${st.name}`, autocomplete: 'off', spellcheck: 'false', value: st.value || '',
      placeholder: st.default || '', 'data-testid': `setting-${st.name}`,
    }),
  }));
  const save = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'client-save' }, 'Save client');
  const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  const consoleUrl = c.consoleUrl || p.consoleUrl;

  const d = openDialog({
    title: `${p.name} OAuth client`,
    testid: 'client-dialog',
    wide: true,
    body: [
      h('ol', { class: 'steps' },
        h('li', null, consoleUrl
          ? ['Create an OAuth app in the ', extLink(consoleUrl, `${p.name} developer console`, { 'data-testid': 'console-link' }), '.']
          : `Create an OAuth app with ${p.name}.`),
        h('li', null, 'Register this exact redirect URI with it.'),
        h('li', null, 'Paste the app’s client ID (and secret) below.')),
      (p.sources || []).length
        ? h('p', { class: 'hint', 'data-testid': 'provider-sources' }, 'Akhrot’s settings for this provider follow: ',
          p.sources.map((u, i) => [i ? ', ' : '', extLink(u, new URL(u).hostname + new URL(u).pathname)]))
        : null,
      h('fieldset', { class: 'field' },
        h('legend', null, 'Redirect'),
        radio('loopback', 'Loopback (this machine)', 'The provider sends you back to Akhrot on 127.0.0.1. Works for most providers.'),
        radio('deep_link', 'Deep link (akhrot://)', 'For providers that refuse http:// redirect URIs; needs the desktop app registered for akhrot:// links.')),
      h('div', { class: 'field' },
        h('span', { class: 'label', id: 'redirect-uri-label' }, 'Redirect URI to register'),
        h('div', { class: 'input-row', role: 'group', 'aria-labelledby': 'redirect-uri-label' }, uri,
          copyButton(() => uri.textContent, () => uri, { testid: 'copy-redirect', what: 'Redirect URI copied' }))),
      field('Client ID', clientId),
      field('Client secret', secret, c.hasSecret
        ? 'A secret is stored. Saving replaces it: enter it again to keep it, or leave empty for a public client (PKCE only).'
        : 'Leave empty for a public client (PKCE only).'),
      settings.map(({ st, input }) => field(st.label, input,
        [st.hint, st.default ? `Empty: ${st.default}.` : null].filter(Boolean).join(' '))),
      err,
    ],
    actions: [cancel, save],
    focus: () => clientId,
    form: async () => {
      err.clear();
      const redirect = d.form.querySelector('input[name="redirect"]:checked');
      const body = { provider: p.code, clientId: clientId.value.trim(), redirect: redirect ? redirect.value : 'loopback' };
      if (secret.value.trim()) body.clientSecret = secret.value.trim();
      const chosen = {};
      for (const { st, input } of settings) if (input.value.trim()) chosen[st.name] = input.value.trim();
      if (settings.length) body.settings = chosen;
      if (!body.clientId) {
        err.show('Enter the client ID.');
        clientId.focus();
        return;
      }
      busy(save, true);
      try {
        const r = await api.post('/admin/clients', body);
        d.close();
        toast(`Saved the ${p.name} OAuth client${r.hasSecret ? '' : ' (public client, PKCE only)'}. You can connect now.`, 'success');
        load('clients').catch(toastError);
      } catch (e) {
        err.show(e);
        busy(save, false);
      }
    },
  });
  cancel.addEventListener('click', () => d.close());
}

/* ---------- API key / Telegram dialog ---------- */

function openAddDialog(p, account) {
  const err = formError();
  const inputs = (p.fields || []).map((f) => ({
    f,
    // A field with a list of values (Mailgun's region) is a choice, its default chosen.
    input: (f.values || []).length
      ? h('select', { name: f.name, 'data-testid': `field-${f.name}` },
        f.values.map((v) => h('option', { value: v, selected: v === f.default }, v)))
      : h('input', {
        name: f.name, type: f.secret ? 'password' : 'text', required: !f.optional,
        autocomplete: f.secret ? 'new-password' : 'off', spellcheck: 'false', 'data-testid': `field-${f.name}`,
      }),
  }));
  const accountInput = h('input', { name: 'account', placeholder: 'default', autocomplete: 'off', spellcheck: 'false', value: account || '', 'data-testid': 'field-account' });
  const save = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'add-save' }, 'Save');
  const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  const d = openDialog({
    title: `Add ${p.name}`,
    testid: 'add-dialog',
    body: [
      h('p', { class: 'muted' }, 'Stored encrypted in the vault on this machine. Agents get it only through Akhrot, under their policy.',
        p.docsUrl ? [' ', extLink(p.docsUrl, `${p.name} docs`)] : null),
      inputs.length ? null : h('p', { class: 'form-error' }, 'This provider lists no fields in the catalog.'),
      inputs.map(({ f, input }) => field(f.optional ? `${f.label} (optional)` : f.label, input, f.hint)),
      field('Account label (optional)', accountInput, 'Tells several accounts of one provider apart; agents pass it as "account". Empty means "default".'),
      err,
    ],
    actions: [cancel, save],
    form: async () => {
      err.clear();
      const fields = {};
      for (const { f, input } of inputs) {
        const v = input.value.trim();
        if (!v) {
          if (f.optional) continue;
          err.show(`Enter the ${f.label}.`);
          input.focus();
          return;
        }
        fields[f.name] = v;
      }
      const body = { provider: p.code, fields };
      if (accountInput.value.trim()) body.account = accountInput.value.trim();
      busy(save, true);
      try {
        const r = await api.post('/admin/connections', body);
        d.close();
        toast(r.replaced ? `Replaced the ${p.name} key for ${r.connection.account}.` : `Connected ${p.name} as ${r.connection.account}.`, 'success');
        load('connections', 'status').catch(toastError);
      } catch (e) {
        err.show(e);
        busy(save, false);
      }
    },
  });
  cancel.addEventListener('click', () => d.close());
}
