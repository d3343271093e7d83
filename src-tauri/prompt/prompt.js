// The approval prompt. It talks to the shell only through two IPC commands, which the prompt
// window's capability (capabilities/prompt.json) allows and no other window has.
'use strict';

const invoke = (cmd, args) => window.__TAURI_INTERNALS__.invoke(cmd, args);
const root = document.getElementById('root');
let current = null;
let ticker = null;

function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'onclick') n.addEventListener('click', v);
    else n.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) n.append(c);
  return n;
}

function row(label, value, testid) {
  if (!value) return null;
  return el('div', { class: 'row' }, el('dt', {}, label), el('dd', { 'data-testid': testid }, value));
}

function processText(peer) {
  if (!peer) return 'unknown (the OS could not say)';
  const exe = peer.exe || (peer.cmdline && peer.cmdline[0]) || '?';
  const parent = peer.parent ? `, started by ${peer.parent.exe || '?'} (pid ${peer.parent.pid})` : '';
  return `${exe} (pid ${peer.pid})${parent}`;
}

function left(expiresAt) {
  const s = Math.max(0, Math.round(expiresAt - Date.now() / 1000));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function render(list, error) {
  clearInterval(ticker);
  root.replaceChildren();
  if (error) root.append(el('p', { class: 'error', 'data-testid': 'error' }, error));
  if (!list.length) {
    current = null;
    root.append(el('p', { class: 'muted', 'data-testid': 'empty' }, 'Nothing is waiting for an answer.'));
    return;
  }
  const p = list[0];
  current = p;
  const timer = el('span', { 'data-testid': 'timer' }, left(p.expiresAt));
  ticker = setInterval(() => { timer.textContent = left(p.expiresAt); }, 1000);
  const parts = [
    el('h1', { 'data-testid': 'title' }, `${p.agent} wants to use ${p.providerName}`),
    list.length > 1 ? el('p', { class: 'muted', 'data-testid': 'count' }, `1 of ${list.length} waiting`) : null,
    el('dl', {},
      row('Agent', p.agent, 'agent'),
      row('Provider', `${p.providerName} (${p.provider})`, 'provider'),
      row('Account', p.account, 'account'),
      row('Scopes', (p.scopes || []).join(' '), 'scopes'),
      row('Reason', p.reason, 'reason'),
      row('Process', processText(p.peer), 'process')),
    el('p', { class: 'muted' }, 'Denied automatically in ', timer, ' if nobody answers.'),
    el('div', { class: 'buttons' },
      el('button', { class: 'deny', 'data-testid': 'deny', onclick: () => answer('deny') }, 'Deny'),
      el('button', { class: 'secondary', 'data-testid': 'allow-hour', onclick: () => answer('hour') }, 'Allow for 1 hour'),
      el('button', { class: 'primary', 'data-testid': 'allow', onclick: () => answer('once') }, 'Allow once')),
  ];
  root.append(...parts.filter((n) => n !== null));
  const allow = root.querySelector('[data-testid="allow"]');
  if (allow) allow.focus();
}

async function refresh(error) {
  try {
    render(await invoke('pending_approvals'), error);
  } catch (e) {
    render([], `Cannot read the pending approvals: ${(e && e.message) || e}`);
  }
}

async function answer(a) {
  if (!current) return;
  for (const b of root.querySelectorAll('button')) b.disabled = true;
  let error = null;
  try {
    await invoke('answer_approval', { id: current.id, answer: a });
  } catch (e) {
    error = (e && e.message) || String(e);
  }
  await refresh(error);
}

window.akhrotRefresh = () => refresh();
document.addEventListener('keydown', (e) => { if (e.key === 'Escape') answer('deny'); });
refresh();
