// Activity: the audit log, filtered, paged, and live.

import { h, clear, emptyState, toastError, fmt, relTime, pageHeader, monogram } from '../dom.js';
import { api, query } from '../api.js';
import { state, on, providerName } from '../store.js';

const ACTIONS = [
  ['token', 'Token hand-outs'],
  ['proxy', 'Proxied calls'],
  ['approval', 'Approval answers'],
  ['connect', 'Connects'],
  ['disconnect', 'Disconnects'],
  ['refresh', 'Token refreshes'],
  ['key', 'Agent keys'],
  ['policy', 'Policies'],
  ['client', 'OAuth clients'],
  ['pause', 'Pause'],
  ['settings', 'Settings'],
];
const PAGE = 100;

// The calling processes, as the OS named them. Entries written before the lookup listed every
// process sharing a connection hold one process object (no `processes`): never called verified.
function peerDetails(peer) {
  if (!peer) return h('span', { class: 'muted' }, '—');
  const processes = Array.isArray(peer.processes) ? peer.processes : (peer.pid ? [peer] : []);
  const verified = peer.verified === true && processes.length === 1;
  const pids = processes.map((p) => p.pid).join(', ');
  const summary = processes.length
    ? `${processes.length > 1 ? 'pids' : 'pid'} ${pids}${verified ? '' : ' (not verified)'}`
    : 'unknown';
  return h('details', { class: 'peer-details', 'data-testid': 'peer-details', 'data-verified': String(verified) },
    h('summary', null, summary),
    peer.note ? h('p', { class: 'small', 'data-testid': 'peer-note' }, peer.note) : null,
    processes.map((p) => h('dl', { class: 'kv kv-tight' },
      h('dt', null, 'Process'), h('dd', { class: 'code' }, `pid ${p.pid}`),
      h('dt', null, 'Executable'), h('dd', { class: 'code' }, p.exe || 'unknown'),
      p.cmdline && p.cmdline.length ? [h('dt', null, 'Command'), h('dd', { class: 'code' }, p.cmdline.join(' '))] : null,
      p.cwd ? [h('dt', null, 'Directory'), h('dd', { class: 'code' }, p.cwd)] : null,
      p.parent ? [h('dt', null, 'Parent'), h('dd', { class: 'code' }, `pid ${p.parent.pid} · ${p.parent.exe || 'unknown'}`)] : null)));
}

const GOOD = new Set(['handed_out', 'allowed', 'ok', 'connected', 'replaced', 'refreshed', 'created', 'set', 'once', 'always', 'allow', 'off', 'changed', 'until quit', 'revoked_and_removed', 'removed']);
const BAD = new Set(['denied', 'deny', 'failed', 'error', 'revoked', 'needs_reconnect', 'on', 'conflict']);
const WARN = new Set(['timeout', 'ask']);

function outcomeKind(e) {
  const o = e.outcome;
  if (WARN.has(o)) return 'warn';
  if (BAD.has(o)) return 'bad';
  if (GOOD.has(o) || /^for \d+s$/.test(o)) return 'good';
  // Proxied calls: the provider's HTTP status.
  if (/^[1-3]\d\d$/.test(o)) return 'good';
  if (/^[45]\d\d$/.test(o)) return 'bad';
  return 'neutral';
}

function pretty(e) {
  const o = e.outcome;
  if (e.action === 'approval') {
    const m = /^for (\d+)s$/.exec(o);
    if (m) return `allowed for ${duration(Number(m[1]))}`;
    const named = { deny: 'denied', once: 'allowed once', always: 'always allowed', 'until quit': 'allowed until quit' };
    if (named[o]) return named[o];
  }
  if (e.action === 'connect') {
    // Consent sessions: started by an agent, then connected, failed, or refused because they
    // would have replaced a stored connection.
    const named = { started: 'session started', conflict: 'refused: already connected' };
    if (named[o]) return named[o];
  }
  return String(o || '').replace(/_/g, ' ');
}

function duration(secs) {
  if (secs % 3600 === 0) return `${secs / 3600} h`;
  if (secs % 60 === 0) return `${secs / 60} min`;
  return `${secs} s`;
}

/** RFC 3339 times in a detail ("until 2026-11-28T05:15:28Z") shown as local times. */
const detailText = (d) => String(d || '').replace(/\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\b/g, (iso) => {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : fmt.clock(t / 1000);
});

export function mount(root) {
  const filters = { agent: '', provider: '', action: '' };
  const sel = (testid, label, first) => h('select', { 'data-testid': testid, 'aria-label': label }, h('option', { value: '' }, first));
  const agentSel = sel('filter-agent', 'Filter by agent', 'All agents');
  const providerSel = sel('filter-provider', 'Filter by provider', 'All providers');
  const actionSel = sel('filter-action', 'Filter by action', 'All actions');
  actionSel.append(...ACTIONS.map(([v, l]) => h('option', { value: v }, l)));

  const tbody = h('tbody');
  const table = h('table', { class: 'audit', 'data-testid': 'audit-table' },
    h('thead', null, h('tr', null,
      ['Time', 'Agent', 'Provider', 'Account', 'Action', 'Outcome', 'Detail', 'Process'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const empty = h('div', { hidden: true });
  const more = h('button', { type: 'button', class: 'btn', 'data-testid': 'load-older', hidden: true }, 'Load older');
  const status = h('p', { class: 'muted small', role: 'status' });

  root.append(h('div', { class: 'page-inner page-wide', 'data-testid': 'page-activity' },
    pageHeader('Activity', 'Every token hand-out and every decision, newest first. Secrets are never logged.'),
    h('div', { class: 'filters', role: 'group', 'aria-label': 'Filters' }, agentSel, providerSel, actionSel, status),
    h('div', { class: 'table-wrap' }, table),
    empty,
    h('div', { class: 'more' }, more)));

  let entries = [];
  let seq = 0;
  let loaded = false;

  function fillOptions() {
    const keep = (s, v) => { s.value = v; if (s.value !== v) s.value = ''; };
    const names = [...new Set(state.keys.map((k) => k.name))].sort();
    clear(agentSel, h('option', { value: '' }, 'All agents'), names.map((n) => h('option', { value: n }, n)));
    if (filters.agent && !names.includes(filters.agent)) agentSel.append(h('option', { value: filters.agent }, filters.agent));
    keep(agentSel, filters.agent);
    clear(providerSel, h('option', { value: '' }, 'All providers'), state.providers.map((p) => h('option', { value: p.code }, p.name)));
    keep(providerSel, filters.provider);
  }

  function matches(e) {
    return (!filters.agent || e.agent === filters.agent || e.agentId === filters.agent)
      && (!filters.provider || e.provider === filters.provider)
      && (!filters.action || e.action === filters.action);
  }

  function row(e) {
    const kind = outcomeKind(e);
    const peerCell = peerDetails(e.peer);
    return h('tr', { 'data-id': String(e.id), 'data-testid': 'audit-row' },
      h('td', { class: 'nowrap' }, h('div', null, fmt.stamp(e.at)), relTime(e.at, 'muted small')),
      h('td', { class: 'nowrap' }, e.agent || h('span', { class: 'muted' }, '—')),
      h('td', null, e.provider
        ? h('span', { class: 'prov' }, monogram(e.provider, providerName(e.provider), 'sm'), providerName(e.provider))
        : h('span', { class: 'muted' }, '—')),
      h('td', null, e.account || h('span', { class: 'muted' }, '—')),
      h('td', null, h('span', { class: 'action' }, e.action)),
      h('td', { class: 'nowrap' },
        h('span', { class: ['outcome', `outcome-${kind}`], title: e.outcome }, pretty(e)),
        e.count > 1 ? h('span', { class: 'count', 'data-testid': 'count', title: e.lastAt ? `last at ${fmt.stamp(e.lastAt)}` : '' }, ` ×${e.count}`) : null),
      h('td', { class: 'detail', title: e.detail || '' }, detailText(e.detail)),
      h('td', null, peerCell));
  }

  function render() {
    if (!loaded) return;
    clear(tbody, entries.map(row));
    table.hidden = entries.length === 0;
    const filtered = filters.agent || filters.provider || filters.action;
    if (entries.length === 0) {
      clear(empty, filtered
        ? emptyState('Nothing matches these filters', 'Choose "All" in a filter to see more.')
        : emptyState('No activity yet', 'Token hand-outs, answers to approval prompts, new keys and connections are logged here as they happen.'));
      empty.hidden = false;
    } else empty.hidden = true;
  }

  // Live entries that arrive while the first page is being fetched: the answer may have been
  // read before they were written, so they are merged into it rather than lost.
  let arrived = null;

  async function fetchPage(before) {
    const my = ++seq;
    arrived = before ? null : new Map();
    status.textContent = 'Loading…';
    try {
      const list = await api.get(`/admin/audit${query({ ...filters, before, limit: PAGE })}`);
      if (my !== seq) return;
      if (before) entries = entries.concat(list);
      else {
        const byId = new Map(list.map((e) => [e.id, e]));
        for (const [id, e] of arrived) if (matches(e)) byId.set(id, e);
        entries = [...byId.values()].sort((a, b) => b.id - a.id);
        arrived = null;
      }
      loaded = true;
      more.hidden = list.length < PAGE;
      status.textContent = '';
      render();
    } catch (err) {
      if (my !== seq) return;
      arrived = null;
      status.textContent = '';
      toastError(err);
    }
  }

  for (const [s, k] of [[agentSel, 'agent'], [providerSel, 'provider'], [actionSel, 'action']]) {
    s.addEventListener('change', () => {
      filters[k] = s.value;
      fetchPage();
    });
  }
  more.addEventListener('click', () => {
    const oldest = entries.reduce((m, e) => Math.min(m, e.id), Infinity);
    if (Number.isFinite(oldest)) fetchPage(oldest);
  });

  const offs = [
    on('keys', fillOptions),
    on('providers', () => { fillOptions(); render(); }),
    on('audit', (e) => {
      if (arrived) arrived.set(e.id, e);
      if (!matches(e)) return;
      const i = entries.findIndex((x) => x.id === e.id);
      if (i >= 0) {
        entries[i] = e;
        tbody.querySelector(`tr[data-id="${e.id}"]`)?.replaceWith(row(e));
        return;
      }
      entries.unshift(e);
      if (!loaded) return;
      if (entries.length === 1) render();
      else {
        const tr = row(e);
        tr.classList.add('is-new');
        tbody.prepend(tr);
      }
    }),
    on('resync', () => fetchPage()),
  ];
  fillOptions();
  table.hidden = true;
  fetchPage();
  return () => offs.forEach((off) => off());
}
