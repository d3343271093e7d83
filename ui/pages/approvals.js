// Approvals: pending token requests, proxied calls and consent sessions, live from the event
// stream.

import { h, clear, monogram, emptyState, toast, toastError, fmt, relTime, pageHeader, scopeChips, icon, ICONS } from '../dom.js';
import { api, seg } from '../api.js';
import { state, on, removeApproval } from '../store.js';

const ANSWERS = [
  ['deny', 'Deny', 'btn-danger', 'Denied'],
  ['once', 'Allow once', '', 'Allowed once'],
  ['hour', 'Allow for 1 hour', '', 'Allowed for 1 hour'],
  ['always', 'Always allow', 'btn-primary', 'Always allowed'],
];
const TESTID = { deny: 'deny', once: 'allow-once', hour: 'allow-hour', always: 'allow-always' };

export function mount(root) {
  const list = h('div', { class: 'approval-list', 'data-testid': 'approval-list', 'aria-live': 'polite' });
  const empty = emptyState('No requests are waiting',
    'When an agent asks for a token, a proxied call or a new connection and its policy is Ask, the request appears here.');
  empty.classList.add('empty-approvals');
  const count = h('span', { class: 'section-count' });
  const heading = h('h1', { tabindex: '-1' }, 'Approvals', count);
  const head = pageHeader('Approvals', 'Agents waiting for your answer. Each request waits until you answer or it times out.');
  head.querySelector('h1').replaceWith(heading);
  root.append(h('div', { class: 'page-inner', 'data-testid': 'page-approvals' }, head, empty, list));

  const cards = new Map();

  function render() {
    const prompts = [...state.approvals.values()].sort((a, b) => a.createdAt - b.createdAt);
    const ids = new Set(prompts.map((p) => p.id));
    let lostFocus = false;
    for (const [id, card] of cards) {
      if (!ids.has(id)) {
        if (card.contains(document.activeElement)) lostFocus = true;
        card.remove();
        cards.delete(id);
      }
    }
    let ref = list.firstChild;
    prompts.forEach((p) => {
      let card = cards.get(p.id);
      if (!card) {
        card = approvalCard(p);
        cards.set(p.id, card);
      } else updateWaiting(card, p);
      // Move only what is out of place: moving a node would take the focus from it.
      if (card === ref) ref = ref.nextSibling;
      else list.insertBefore(card, ref);
    });
    empty.hidden = prompts.length > 0;
    count.textContent = prompts.length ? String(prompts.length) : '';
    // Never onto a button that allows: a second Enter would approve the next request (one
    // that may have arrived a moment ago) without the person reading it.
    if (lostFocus) heading.focus();
  }

  const off = on('approvals', render);
  render();
  return off;
}

function updateWaiting(card, p) {
  const el = card.querySelector('[data-role="waiting"]');
  if (el) el.textContent = waitingText(p.waiting);
}

const waitingText = (n) => (n > 1 ? `${n} requests waiting` : '1 request waiting');

function processRows(proc) {
  const rows = [
    ['Process', `pid ${proc.pid}`],
    ['Executable', proc.exe || 'unknown'],
  ];
  if (proc.cmdline && proc.cmdline.length) rows.push(['Command line', proc.cmdline.join(' ')]);
  if (proc.cwd) rows.push(['Working directory', proc.cwd]);
  if (proc.uid !== undefined && proc.uid !== null) rows.push(['User id', String(proc.uid)]);
  if (proc.parent) {
    const pp = proc.parent;
    const cmd = pp.cmdline && pp.cmdline.length ? ` — ${pp.cmdline.join(' ')}` : '';
    rows.push(['Parent process', `pid ${pp.pid} · ${pp.exe || 'unknown'}${cmd}`]);
  }
  return rows;
}

// The OS's answer: `verified` only when exactly one process holds the connection and all of
// it could be read; otherwise `note` says why, and every process holding it is listed.
function peerBlock(peer) {
  const processes = (peer && Array.isArray(peer.processes)) ? peer.processes : [];
  const verified = !!(peer && peer.verified === true && processes.length === 1);
  const note = (peer && peer.note) || (processes.length ? '' : 'the OS could not say which process this is');
  const title = verified ? 'Verified by the OS' : 'Not verified';
  return h('div', { class: ['peer', verified ? '' : 'peer-unknown'], 'data-testid': 'peer', 'data-verified': String(verified) },
    h('h4', { class: 'peer-title' }, icon(verified ? ICONS.shield : ICONS.warn), title),
    note ? h('p', { class: 'peer-note', 'data-testid': 'peer-note' }, note) : null,
    processes.map((proc, i) => [
      processes.length > 1 ? h('p', { class: 'peer-count muted small' }, `Process ${i + 1} of ${processes.length}`) : null,
      h('dl', { class: 'kv', 'data-testid': 'peer-process' }, processRows(proc).map(([k, v]) => [h('dt', null, k), h('dd', { class: 'code' }, v)])),
    ]));
}

/** What a prompt is about: `token`, `proxy` or `connect` (older servers: no `kind`). */
const kindOf = (p) => p.kind || (p.request ? 'proxy' : 'token');

function requestLine(p, kind) {
  if (kind === 'connect') {
    return h('p', { class: 'small muted', 'data-testid': 'approval-request' },
      `Consent session: you sign in at ${p.providerName || p.provider} in your browser, and Akhrot stores a new connection. It can never replace an account you already connected.`);
  }
  if (kind === 'proxy') {
    return h('p', { class: 'small' }, h('span', { class: 'muted' }, 'Proxied call (the agent never sees the token): '), h('span', { class: 'code', 'data-testid': 'approval-request' }, p.request));
  }
  return h('p', { class: 'small muted', 'data-testid': 'approval-request' }, 'Token hand-out: the agent receives the credential.');
}

function cardTitle(p, kind) {
  const provider = p.providerName || p.provider;
  if (kind === 'connect') {
    return `${p.agent} wants to connect ${provider} as ${p.account || 'a new account'}`;
  }
  return [provider, h('span', { class: 'muted' }, ` · ${p.account}`)];
}

function approvalCard(p) {
  const kind = kindOf(p);
  // A consent session is allowed once at most: the broader answers would grant nothing more.
  const answers = kind === 'connect' ? ANSWERS.filter(([a]) => a === 'deny' || a === 'once') : ANSWERS;
  const buttons = answers.map(([answer, label, cls]) => h('button', {
    type: 'button', class: ['btn', cls], 'data-testid': TESTID[answer], 'data-answer': answer,
  }, label));
  const card = h('article', {
    class: 'card approval-card', 'data-testid': 'approval-card', 'data-approval-id': p.id, 'data-kind': kind,
    'aria-labelledby': `ap-${p.id}-title`,
  },
    h('div', { class: 'card-row' },
      monogram(p.provider, p.providerName, 'lg'),
      h('div', { class: 'card-main' },
        h('h3', { class: 'card-title', id: `ap-${p.id}-title` }, cardTitle(p, kind)),
        h('p', { class: 'card-sub' },
          h('span', { class: 'muted' }, 'Agent (its key name, as it claims): '),
          h('strong', { 'data-testid': 'approval-agent' }, p.agent))),
      h('div', { class: 'countdown-box', title: `Expires at ${fmt.clock(p.expiresAt)}` },
        h('span', { class: 'muted small' }, 'expires in'),
        h('span', { class: 'countdown', 'data-expires': String(p.expiresAt), 'data-testid': 'countdown' }, fmt.countdown(p.expiresAt - Date.now() / 1000)))),
    h('div', { class: 'approval-body' },
      h('div', { class: 'approval-facts' },
        h('p', { class: 'reason' }, p.reason
          ? [h('span', { class: 'muted' }, 'Reason: '), h('q', { 'data-testid': 'approval-reason' }, p.reason)]
          : h('span', { class: 'muted', 'data-testid': 'approval-reason' }, 'No reason given.')),
        scopeChips(p.scopes),
        requestLine(p, kind),
        h('p', { class: 'muted small' },
          'Asked at ', fmt.clock(p.createdAt), ' (', relTime(p.createdAt * 1000), ') · ',
          h('span', { 'data-role': 'waiting', 'data-testid': 'waiting' }, waitingText(p.waiting)))),
      peerBlock(p.peer)),
    h('div', { class: 'approval-actions' }, buttons),
    kind === 'proxy'
      ? h('p', { class: 'muted small', 'data-testid': 'approval-proxy-note' },
        'Allowing for a while or always lets this agent make proxied calls to this provider without asking; it still never receives the token.')
      : null);

  buttons.forEach((b) => b.addEventListener('click', () => answer(p, b.dataset.answer, buttons)));
  return card;
}

async function answer(p, ans, buttons) {
  // aria-disabled rather than disabled: a disabled button would drop the keyboard focus.
  if (buttons[0].getAttribute('aria-disabled') === 'true') return;
  buttons.forEach((b) => b.setAttribute('aria-disabled', 'true'));
  try {
    await api.post(`/admin/approvals/${seg(p.id)}`, { answer: ans });
    const what = ANSWERS.find((a) => a[0] === ans)[3];
    toast(`${what}: ${p.agent} → ${p.providerName || p.provider}.`, ans === 'deny' ? 'info' : 'success');
    removeApproval(p.id);
  } catch (err) {
    if (err.code === 'NOT_FOUND' || err.status === 404) {
      toast('That request already ended (answered elsewhere, withdrawn or timed out).', 'info');
      removeApproval(p.id);
    } else {
      toastError(err);
      buttons.forEach((b) => b.removeAttribute('aria-disabled'));
    }
  }
}
