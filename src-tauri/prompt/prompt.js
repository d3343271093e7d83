// The approval prompt. It talks to the shell only through two IPC commands, which the prompt
// window's capability (capabilities/prompt.json) allows and no other window has.
//
// It must not be answerable by accident: it says what the agent gets (a token it holds itself,
// one proxied call with its method and URL, a new connection), never focuses a button that
// allows (the first focus is on the heading; Enter or Space there does nothing), and ignores
// every answer for ARM_DELAY_MS after a prompt appears or what it shows changes, as browsers do
// for permission prompts: a keystroke or click meant for another window cannot land on it.
'use strict';

// How long the answer buttons stay disabled after the shown request appears or changes.
const ARM_DELAY_MS = 1000;

const invoke = (cmd, args) => window.__TAURI_INTERNALS__.invoke(cmd, args);
const root = document.getElementById('root');
let current = null;
let ticker = null;
// What the shown prompt says (its signature), when it was shown, and whether answers count yet.
let shownSig = null;
let shownAt = 0;
let armed = false;
let armTimer = null;

function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'onclick') n.addEventListener('click', v);
    else n.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) n.append(c);
  return n;
}

function row(label, value, testid) {
  if (value === null || value === undefined || value === '') return null;
  return el('div', { class: 'row' }, el('dt', {}, label), el('dd', { 'data-testid': testid }, value));
}

// One argument as a shell would need it, so that `a b` and `"a b"` read differently.
function quoteArg(a) {
  const s = String(a);
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function argv(cmdline) {
  return Array.isArray(cmdline) && cmdline.length ? cmdline.map(quoteArg).join(' ') : null;
}

function processBlock(proc) {
  const parent = proc.parent
    ? `${proc.parent.exe || '?'} (pid ${proc.parent.pid})${argv(proc.parent.cmdline) ? ` — ${argv(proc.parent.cmdline)}` : ''}`
    : null;
  return el('dl', { class: 'proc', 'data-testid': 'peer-process' },
    row('Program', `${proc.exe || '?'} (pid ${proc.pid})`, 'peer-exe'),
    row('Command', argv(proc.cmdline), 'peer-argv'),
    row('Directory', proc.cwd, 'peer-cwd'),
    row('User id', proc.uid === undefined || proc.uid === null ? null : String(proc.uid), 'peer-uid'),
    row('Started by', parent, 'peer-parent'));
}

// Who is asking, as the OS tells it. The new shape says whether the connection is tied to one
// process (`verified`) and lists every process that holds it; the old shape is one process.
function peerSection(peer) {
  const title = (text, cls) => el('h2', { class: cls || '', 'data-testid': 'peer-status' }, text);
  if (!peer) {
    return el('section', { class: 'peer', 'data-testid': 'process' },
      title('Process'), el('p', { class: 'muted' }, 'unknown (the OS could not say)'));
  }
  if (Array.isArray(peer.processes) || 'verified' in peer) {
    const procs = Array.isArray(peer.processes) ? peer.processes : [];
    const status = peer.verified === true
      ? title('Process (verified by the OS)')
      : title(`Not verified: ${peer.note || 'the OS could not tie this connection to one process.'}`, 'warn');
    return el('section', { class: 'peer', 'data-testid': 'process' },
      status,
      procs.length ? procs.map(processBlock) : el('p', { class: 'muted' }, 'No process found.'));
  }
  return el('section', { class: 'peer', 'data-testid': 'process' }, title('Process'), processBlock(peer));
}

const article = (word) => (/^[aeiou]/i.test(word) ? 'an' : 'a');

// What the agent gets if this is allowed.
function describe(p) {
  const kind = p.kind || (p.request ? 'proxy' : 'token');
  const name = p.providerName || p.provider;
  switch (kind) {
    case 'token':
      return {
        kind,
        title: `${p.agent} wants ${article(name)} ${name} token`,
        what: 'Token hand-out: the agent will hold the token itself and can use it for anything the token allows until it expires.',
        hour: 'Allow for 1 hour: the agent gets tokens without asking for an hour.',
      };
    case 'proxy':
      return {
        kind,
        title: `${p.agent} wants to call ${name} through Akhrot`,
        what: 'Proxied call: Akhrot makes this one call for the agent and adds the credential; the agent never sees the token.',
        hour: 'Allow for 1 hour: the agent makes proxied calls to this provider without asking for an hour; it still never receives the token.',
      };
    case 'connect':
      return {
        kind,
        title: `${p.agent} wants to connect ${name} as ${p.account || 'a new account'}`,
        what: `Connect: the agent asks to add ${p.account ? `the account ${p.account}` : 'a new account'} of ${name} to Akhrot.`,
        hour: null,
      };
    default:
      return {
        kind,
        title: `${p.agent} asks for access to ${name} (${kind})`,
        what: `A request of a kind this prompt does not know (${kind}): deny it unless you know what it is.`,
        hour: null,
      };
  }
}

function left(expiresAt) {
  const s = Math.max(0, Math.round(expiresAt - Date.now() / 1000));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

// Everything the person reads before answering: a change to any of it re-arms the delay.
function signature(p, list) {
  const { expiresAt, ...shown } = p;
  return JSON.stringify([shown, list.length > 1]);
}

function answerButtons() {
  return [...root.querySelectorAll('button[data-answer]')];
}

function setArmed(on) {
  armed = on;
  root.dataset.armed = on ? 'true' : 'false';
  for (const b of answerButtons()) b.disabled = !on;
  const hint = root.querySelector('[data-testid="arming"]');
  if (hint) hint.hidden = on;
}

// Starts the delay again (a new or changed request, or the window came back into view).
function rearm() {
  clearTimeout(armTimer);
  shownAt = performance.now();
  setArmed(false);
  armTimer = setTimeout(() => setArmed(true), ARM_DELAY_MS);
}

function render(list, error) {
  clearInterval(ticker);
  const hadFocus = root.contains(document.activeElement) || document.activeElement === document.body;
  root.replaceChildren();
  if (error) root.append(el('p', { class: 'error', 'data-testid': 'error' }, error));
  if (!list.length) {
    current = null;
    shownSig = null;
    clearTimeout(armTimer);
    armed = false;
    root.append(el('p', { class: 'muted', 'data-testid': 'empty' }, 'Nothing is waiting for an answer.'));
    return;
  }
  const p = list[0];
  current = p;
  const d = describe(p);
  const timer = el('span', { 'data-testid': 'timer' }, left(p.expiresAt));
  ticker = setInterval(() => { timer.textContent = left(p.expiresAt); }, 1000);
  // The heading takes the first focus: Enter or Space on it answers nothing.
  const heading = el('h1', { 'data-testid': 'title', tabindex: '-1' }, d.title);
  const waiting = Number(p.waiting) || 1;
  // What is asked stays in view; the details below it scroll.
  root.append(el('header', { class: 'head' }, [
    heading,
    el('p', { class: `kind kind-${d.kind}`, 'data-testid': 'kind', 'data-kind': d.kind }, d.what),
    p.request ? el('pre', { class: 'request', 'data-testid': 'request' }, p.request) : null,
    waiting > 1
      ? el('p', { class: 'waiting', 'data-testid': 'waiting' }, `This answer applies to ${waiting} waiting requests.`)
      : null,
    list.length > 1 ? el('p', { class: 'muted', 'data-testid': 'count' }, `1 of ${list.length} waiting`) : null,
  ]), el('div', { class: 'details' }, [
    el('dl', {},
      row('Agent', p.agent, 'agent'),
      row('Provider', `${p.providerName} (${p.provider})`, 'provider'),
      row('Account', p.account, 'account'),
      row('Scopes', (p.scopes || []).join(' '), 'scopes'),
      row('Reason', p.reason, 'reason')),
    peerSection(p.peer),
    el('p', { class: 'muted' }, 'Denied automatically in ', timer, ' if nobody answers.'),
    d.hour ? el('p', { class: 'muted small', 'data-testid': 'hour-note' }, d.hour) : null,
  ]));
  const buttons = [
    el('button', { type: 'button', class: 'deny', 'data-testid': 'deny', 'data-answer': 'deny' }, 'Deny'),
    d.hour ? el('button', { type: 'button', class: 'secondary', 'data-testid': 'allow-hour', 'data-answer': 'hour' }, 'Allow for 1 hour') : null,
    el('button', { type: 'button', class: 'primary', 'data-testid': 'allow', 'data-answer': 'once' }, 'Allow once'),
  ].filter((n) => n !== null);
  for (const b of buttons) b.addEventListener('click', () => answer(b.dataset.answer));
  root.append(el('footer', { class: 'buttons' },
    el('span', { class: 'muted small arming', 'data-testid': 'arming' }, 'Read the request: the buttons work in a moment.'),
    buttons));
  const sig = signature(p, list);
  if (sig !== shownSig) {
    shownSig = sig;
    rearm();
  } else {
    setArmed(armed);
  }
  if (hadFocus) heading.focus({ preventScroll: true });
}

async function refresh(error) {
  try {
    render(await invoke('pending_approvals'), error);
  } catch (e) {
    render([], `Cannot read the pending approvals: ${(e && e.message) || e}`);
  }
}

async function answer(a) {
  // Disabled buttons send no clicks; this also covers keys and anything synthetic.
  if (!current || !armed) return;
  const id = current.id;
  for (const b of answerButtons()) b.disabled = true;
  armed = false;
  let error = null;
  try {
    await invoke('answer_approval', { id, answer: a });
  } catch (e) {
    error = (e && e.message) || String(e);
  }
  shownSig = null;
  await refresh(error);
}

window.akhrotRefresh = () => refresh();
// For tests and the curious: the delay and when the shown request appeared.
window.akhrotPrompt = Object.freeze({
  ARM_DELAY_MS,
  state: () => ({ armed, shownAt, sinceShown: performance.now() - shownAt, id: current && current.id }),
});
document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && !e.repeat) answer('deny'); });
// Back into view (unminimised, uncovered workspace): read it again before answering.
document.addEventListener('visibilitychange', () => { if (!document.hidden && current) rearm(); });
refresh();
