// The shell: routing, live events, the approvals badge, the paused banner, sign-out.

import { api, setUnauthorizedHandler } from './api.js';
import { state, on, emit, load, addApproval, removeApproval, setPaused } from './store.js';
import { tick, toast, toastError } from './dom.js';
import * as connections from './pages/connections.js';
import * as approvals from './pages/approvals.js';
import * as agents from './pages/agents.js';
import * as activity from './pages/activity.js';
import * as settings from './pages/settings.js';

const PAGES = { connections, approvals, agents, activity, settings };
const DEFAULT_ROUTE = 'connections';

const $ = (sel) => document.querySelector(sel);
const shell = $('#shell');
const pageEl = $('#page');

let current = null; // { name, unmount }
let events = null;
let timers = [];

/* ---------- signed out ---------- */

export function showSignedOut() {
  if (state.signedOut) return;
  state.signedOut = true;
  if (events) events.close();
  events = null;
  timers.forEach(clearInterval);
  timers = [];
  if (current && current.unmount) current.unmount();
  current = null;
  for (const d of document.querySelectorAll('dialog')) d.close();
  $('#toasts').replaceChildren();
  pageEl.replaceChildren();
  shell.hidden = true;
  $('#boot').hidden = true;
  $('[data-testid="signed-out"]').hidden = false;
  document.title = 'Signed out · Akhrot';
}
setUnauthorizedHandler(showSignedOut);
// Other modules (Settings' sign-out button) ask for it through an event, avoiding an import cycle.
on('signed-out', showSignedOut);

/* ---------- routing ---------- */

function routeName() {
  const m = /^#\/([a-z]+)/.exec(window.location.hash);
  return m && PAGES[m[1]] ? m[1] : DEFAULT_ROUTE;
}

function route() {
  if (state.signedOut) return;
  const name = routeName();
  if (current && current.name === name) return;
  if (current && current.unmount) current.unmount();
  pageEl.replaceChildren();
  const unmount = PAGES[name].mount(pageEl);
  current = { name, unmount };
  for (const a of document.querySelectorAll('.nav-link')) {
    if (a.dataset.route === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  tick(pageEl);
}

// The skip link must not change the hash (that is the router's).
$('.skip-link').addEventListener('click', (e) => {
  e.preventDefault();
  const heading = pageEl.querySelector('h1');
  if (heading && !heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
  (heading || pageEl).focus();
});

/* ---------- badge, title, banner ---------- */

function renderApprovalCount() {
  const n = state.approvals.size;
  const badge = $('[data-testid="approvals-badge"]');
  badge.textContent = String(n);
  badge.hidden = n === 0;
  badge.setAttribute('aria-label', `${n} waiting`);
  document.title = n > 0 ? `(${n}) Akhrot` : 'Akhrot';
}

function renderPaused() {
  $('[data-testid="paused-banner"]').hidden = !(state.status && state.status.paused);
}

function renderVersion() {
  const s = state.status && state.status.server;
  $('[data-testid="version"]').textContent = s ? `v${s.version} · port ${s.port}` : '';
}

$('[data-testid="resume"]').addEventListener('click', async (e) => {
  const btn = e.currentTarget;
  btn.disabled = true;
  try {
    const r = await api.post('/admin/pause', { paused: false });
    setPaused(r.paused);
    toast('Agents resumed: requests are answered again.', 'success');
  } catch (err) {
    toastError(err);
  } finally {
    btn.disabled = false;
  }
});

/* ---------- live events ---------- */

function setLive(kind) {
  const el = $('[data-testid="live-status"]');
  el.dataset.state = kind;
  el.querySelector('.live-text').textContent = { live: 'Live', reconnecting: 'Reconnecting…', connecting: 'Connecting…' }[kind];
}

function notify(prompt) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const n = new Notification('Akhrot: approval needed', {
      body: prompt.kind === 'connect'
        ? `${prompt.agent} wants to connect ${prompt.providerName || prompt.provider} as ${prompt.account || 'a new account'}`
        : `${prompt.agent} asks for ${prompt.providerName || prompt.provider} (${prompt.account})`,
      tag: `akhrot-${prompt.id}`,
      icon: 'icon.svg',
    });
    n.onclick = () => { window.focus(); window.location.hash = '#/approvals'; n.close(); };
  } catch {
    /* some platforms only allow notifications from a service worker */
  }
}

// Audit actions that mean some other list changed behind our back.
const RELOAD_ON_AUDIT = {
  connect: ['connections', 'status'],
  disconnect: ['connections', 'status'],
  refresh: ['connections'],
  key: ['keys', 'status'],
  policy: ['keys'],
  client: ['clients'],
  pause: ['status'],
  approval: ['keys'],
  settings: ['status'],
};
let reloadTimer = null;
const pendingReloads = new Set();
function reloadSoon(parts) {
  parts.forEach((p) => pendingReloads.add(p));
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => {
    const list = [...pendingReloads];
    pendingReloads.clear();
    load(...list).catch(toastError);
  }, 150);
}

function reloadAll() {
  load().catch(toastError);
  emit('resync');
}

function parse(e) {
  try {
    return JSON.parse(e.data);
  } catch {
    return null;
  }
}

function connectEvents() {
  if (state.signedOut) return;
  let hadError = false;
  const es = new EventSource('/admin/events');
  events = es;
  es.addEventListener('open', () => {
    setLive('live');
    if (hadError) {
      hadError = false;
      reloadAll();
    }
  });
  es.addEventListener('error', async () => {
    if (events !== es) return;
    hadError = true;
    setLive('reconnecting');
    try {
      const { signedIn } = await api.get('/ui/session');
      if (!signedIn) emit('signed-out');
    } catch {
      /* not reachable: EventSource keeps retrying */
    }
    // A refused stream (not a dropped one) is not retried by the browser: start a new one.
    if (es.readyState === EventSource.CLOSED && events === es && !state.signedOut) {
      setTimeout(() => { if (events === es) connectEvents(); }, 3000);
    }
  });
  es.addEventListener('approval', (e) => {
    const ev = parse(e);
    if (!ev) return;
    if (ev.type === 'created' && ev.prompt) {
      const isNew = !state.approvals.has(ev.prompt.id);
      addApproval(ev.prompt);
      if (isNew) notify(ev.prompt);
    } else if (ev.type === 'resolved') {
      removeApproval(ev.id);
      emit('approval-resolved', ev);
    }
  });
  es.addEventListener('audit', (e) => {
    const entry = parse(e);
    if (!entry) return;
    emit('audit', entry);
    const parts = RELOAD_ON_AUDIT[entry.action];
    if (parts) reloadSoon(parts);
  });
  es.addEventListener('resync', reloadAll);
}

/* ---------- start ---------- */

async function start() {
  try {
    const { signedIn } = await api.get('/ui/session');
    if (!signedIn) {
      emit('signed-out');
      return;
    }
    await load('status');
  } catch (err) {
    if (err.code === 'UNAUTHORIZED') return;
    const boot = $('#boot');
    boot.textContent = `${err.message} `;
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.className = 'btn btn-small';
    retry.textContent = 'Try again';
    retry.addEventListener('click', () => { boot.textContent = 'Loading Akhrot…'; start(); });
    boot.appendChild(retry);
    return;
  }
  on('approvals', renderApprovalCount);
  on('status', () => { renderPaused(); renderVersion(); });
  on('paused', renderPaused);
  renderApprovalCount();
  renderPaused();
  renderVersion();
  $('#boot').hidden = true;
  shell.hidden = false;
  window.addEventListener('hashchange', route);
  route();
  load('providers', 'connections', 'clients', 'keys').catch(toastError);
  connectEvents();
  timers.push(setInterval(() => tick(), 1000));
}

start();
