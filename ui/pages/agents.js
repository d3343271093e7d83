// Agents: their keys, what each may reach without asking, and new keys.

import {
  h, clear, badge, emptyState, field, openDialog, confirmDialog, toast, toastError, busy, copyButton,
  fmt, relTime, icon, ICONS, pageHeader, formError,
} from '../dom.js';
import { api, seg } from '../api.js';
import { state, on, load, providerName, baseUrl } from '../store.js';

const MODES = [
  ['ask', 'Ask'],
  ['allow', 'Allow'],
  ['deny', 'Deny'],
  ['allow-hour', 'Allow for 1 hour'],
  ['proxy-only', 'Proxy only (never the token)'],
];

export function mount(root) {
  const err = formError();
  const nameInput = h('input', {
    name: 'agentName', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: '64',
    placeholder: 'e.g. claude-code', 'data-testid': 'agent-name',
  });
  const allowAll = h('input', { type: 'checkbox', name: 'allowAll', 'data-testid': 'agent-allow-all' });
  const createBtn = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'create-agent-submit' }, icon(ICONS.plus), 'Create key');
  const form = h('form', { class: 'card create-agent', 'data-testid': 'create-agent', 'aria-labelledby': 'create-agent-title' },
    h('h2', { class: 'card-title', id: 'create-agent-title' }, 'New agent key'),
    h('p', { class: 'muted small' }, 'One key per agent (a coding assistant, a script, a CI job), so you can see who asked and revoke one without the others.'),
    h('div', { class: 'create-row' },
      field('Agent name', nameInput),
      h('label', { class: 'check' }, allowAll, h('span', null, 'Allow every provider without asking')),
      createBtn),
    err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.clear();
    const name = nameInput.value.trim();
    if (!name) {
      err.show('Give the agent a name.');
      nameInput.focus();
      return;
    }
    busy(createBtn, true);
    try {
      const r = await api.post('/admin/keys', { name, allowAll: allowAll.checked });
      nameInput.value = '';
      allowAll.checked = false;
      showNewKey(r.key, r.agent);
      load('keys', 'status').catch(toastError);
    } catch (ex) {
      err.show(ex);
    } finally {
      busy(createBtn, false);
    }
  });

  const list = h('div', { class: 'agent-list', 'data-testid': 'agent-list' });
  root.append(h('div', { class: 'page-inner', 'data-testid': 'page-agents' },
    pageHeader('Agents', 'Each agent holds its own key. Its policy per provider decides: ask you, allow, or deny.'),
    form,
    h('section', { class: 'section', 'aria-labelledby': 'sec-agents' },
      h('h2', { class: 'section-title', id: 'sec-agents' }, 'Agent keys'),
      list)));

  const rendered = new Map(); // agent id → { json, node }

  function render() {
    if (!state.loaded.has('keys')) {
      clear(list, h('p', { class: 'loading' }, 'Loading…'));
      return;
    }
    if (state.keys.length === 0) {
      rendered.clear();
      clear(list, emptyState('No agents yet',
        'Create a key for each agent above, then give it to the agent with the snippet shown. Agents without a key get nothing.'));
      return;
    }
    const sorted = [...state.keys].sort((a, b) => (!!a.revokedAt - !!b.revokedAt) || a.name.localeCompare(b.name));
    const focusedId = document.activeElement && document.activeElement.getAttribute('data-testid');
    let lost = false;
    const nodes = sorted.map((a) => {
      const json = JSON.stringify(a);
      const old = rendered.get(a.id);
      if (old && old.json === json && old.providers === state.providers) return old.node;
      if (old && old.node.contains(document.activeElement)) lost = true;
      const node = agentCard(a);
      if (old) keepChoices(old.node, node);
      rendered.set(a.id, { json, node, providers: state.providers });
      return node;
    });
    const ids = new Set(sorted.map((a) => a.id));
    for (const id of [...rendered.keys()]) if (!ids.has(id)) rendered.delete(id);
    if ([...list.children].some((c, i) => c !== nodes[i]) || list.children.length !== nodes.length) {
      for (const c of [...list.children]) if (!nodes.includes(c)) {
        if (c.contains(document.activeElement)) lost = true;
        c.remove();
      }
      let ref = list.firstChild;
      for (const n of nodes) {
        if (n === ref) ref = ref.nextSibling;
        else list.insertBefore(n, ref);
      }
    }
    if (lost && focusedId) {
      const again = list.querySelector(`[data-testid="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
  }

  const offs = ['keys', 'providers'].map((t) => on(t, render));
  render();
  return () => offs.forEach((off) => off());
}

// A card is rebuilt when its agent changes (a request updates "last used"): choices the person
// was making in its policy editor carry over, so a click on "Set policy" sets what they chose.
function keepChoices(from, to) {
  for (const sel of from.querySelectorAll('select[data-touched]')) {
    const twin = to.querySelector(`select[data-testid="${CSS.escape(sel.dataset.testid)}"]`);
    if (twin && [...twin.options].some((o) => o.value === sel.value)) {
      twin.value = sel.value;
      twin.dataset.touched = '1';
    }
  }
}

function policyChips(a) {
  const now = Date.now() / 1000;
  const entries = Object.entries(a.policies || {}).sort(([x], [y]) => (x === '*' ? -1 : y === '*' ? 1 : providerName(x).localeCompare(providerName(y))));
  const chips = entries.map(([code, pol]) => {
    let mode = pol.mode;
    let text = { allow: 'Allow', ask: 'Ask', deny: 'Deny', 'proxy-only': 'Proxy only' }[mode] || mode;
    if ((mode === 'allow' || mode === 'proxy-only') && pol.until) {
      if (pol.until > now) text = `${text} until ${fmt.clock(pol.until)}`;
      else {
        text = `Ask (${text.toLowerCase()} ended ${fmt.clock(pol.until)})`;
        mode = 'ask';
      }
    }
    return h('li', { class: ['chip', `chip-${mode}`], 'data-testid': `policy-${code}` },
      h('span', { class: 'chip-key' }, code === '*' ? 'Every provider' : providerName(code)), ` → ${text}`);
  });
  if (!a.policies || !a.policies['*']) {
    chips.unshift(h('li', { class: 'chip chip-ask chip-default', 'data-testid': 'policy-default' },
      h('span', { class: 'chip-key' }, 'Every other provider'), ' → Ask'));
  }
  return h('ul', { class: 'chips', 'aria-label': 'Policies' }, chips);
}

function policyEditor(a) {
  const id = `pol-${a.id}`;
  const provider = h('select', { id: `${id}-p`, 'data-testid': `policy-provider-${a.name}` },
    h('option', { value: '*' }, 'Every provider (*)'),
    state.providers.map((p) => h('option', { value: p.code }, p.name)));
  const mode = h('select', { id: `${id}-m`, 'data-testid': `policy-mode-${a.name}` }, MODES.map(([v, l]) => h('option', { value: v }, l)));
  const syncMode = () => {
    const pol = (a.policies || {})[provider.value];
    mode.value = pol ? (pol.mode === 'allow' && pol.until && pol.until > Date.now() / 1000 ? 'allow-hour' : pol.mode) : 'ask';
  };
  provider.addEventListener('change', syncMode);
  for (const sel of [provider, mode]) sel.addEventListener('change', () => { sel.dataset.touched = '1'; });
  syncMode();
  const set = h('button', { type: 'submit', class: 'btn btn-small', 'data-testid': `policy-set-${a.name}` }, 'Set policy');
  const form = h('form', { class: 'policy-editor', 'aria-label': `Policy for ${a.name}` },
    h('label', { for: provider.id, class: 'small' }, 'Provider'), provider,
    h('label', { for: mode.id, class: 'small' }, 'Mode'), mode,
    set);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { agent: a.name, provider: provider.value, mode: mode.value === 'allow-hour' ? 'allow' : mode.value };
    if (mode.value === 'allow-hour') body.forSeconds = 3600;
    busy(set, true);
    try {
      await api.post('/admin/policies', body);
      const label = MODES.find(([v]) => v === mode.value)[1];
      toast(`${a.name}: ${provider.value === '*' ? 'every provider' : providerName(provider.value)} → ${label}.`, 'success');
      await load('keys');
    } catch (ex) {
      toastError(ex);
    } finally {
      busy(set, false);
    }
  });
  return form;
}

function agentCard(a) {
  const revoked = !!a.revokedAt;
  return h('article', { class: ['card', 'agent-card', revoked && 'is-revoked'], 'data-testid': `agent-${a.name}` },
    h('div', { class: 'card-row' },
      h('span', { class: 'agent-icon', 'aria-hidden': 'true' }, icon(ICONS.key)),
      h('div', { class: 'card-main' },
        h('h3', { class: 'card-title' }, a.name, ' ',
          revoked ? badge('Revoked', 'muted', { 'data-testid': 'agent-status' }) : badge('Active', 'ok', { 'data-testid': 'agent-status' })),
        h('p', { class: 'card-sub muted small' },
          `Created ${fmt.dateTime(a.createdAt)} · `,
          revoked ? `revoked ${fmt.dateTime(a.revokedAt)} · ` : null,
          'last used ', a.lastUsedAt ? relTime(a.lastUsedAt * 1000) : 'never')),
      revoked ? null : h('div', { class: 'card-actions' },
        h('button', { type: 'button', class: 'btn btn-small btn-danger-quiet', 'data-testid': `revoke-${a.name}`, onclick: () => revoke(a) }, 'Revoke'))),
    h('div', { class: 'card-details' },
      policyChips(a),
      revoked ? null : policyEditor(a)));
}

async function revoke(a) {
  const ok = await confirmDialog({
    title: `Revoke ${a.name}?`,
    message: ['Its key stops working at once, and any request it has waiting is refused. This cannot be undone: the agent would need a new key.'],
    confirmLabel: 'Revoke key',
    danger: true,
  });
  if (!ok) return;
  try {
    await api.del(`/admin/keys/${seg(a.name)}`);
    toast(`Revoked the key of ${a.name}.`, 'success');
  } catch (err) {
    toastError(err);
  }
  load('keys', 'status').catch(toastError);
}

function showNewKey(key, agent) {
  const keyInput = h('input', { readOnly: true, class: 'code key-field', value: key, 'data-testid': 'new-key', 'aria-label': 'The new agent key', spellcheck: 'false' });
  const snippetText = `export AKHROT_API_KEY=${key}\nexport AKHROT_URL=${baseUrl()}\ncurl -s $AKHROT_URL/ai/skill`;
  const snippet = h('pre', { class: 'snippet', 'data-testid': 'key-snippet', tabindex: '0' }, snippetText);
  const done = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'new-key-done' }, 'Done');
  const d = openDialog({
    title: `Key for ${agent.name}`,
    testid: 'new-key-dialog',
    wide: true,
    body: [
      h('p', { class: 'callout callout-warn', role: 'note' }, icon(ICONS.warn),
        h('span', null, h('strong', null, 'This key is shown once. '), 'Copy it now: Akhrot keeps only a hash of it. If you lose it, revoke it and create another.')),
      h('div', { class: 'field' },
        h('label', { for: 'new-key-field' }, 'Agent key'),
        h('div', { class: 'input-row' }, Object.assign(keyInput, { id: 'new-key-field' }),
          copyButton(key, keyInput, { testid: 'copy-key', what: 'Key copied' }))),
      h('div', { class: 'field' },
        h('div', { class: 'label-row' },
          h('span', { class: 'label' }, 'For the agent'),
          copyButton(snippetText, snippet, { testid: 'copy-snippet', what: 'Snippet copied' })),
        snippet,
        h('p', { class: 'hint' }, 'The skill document tells the agent how to ask Akhrot for tokens.')),
    ],
    actions: [done],
    focus: () => keyInput,
  });
  done.addEventListener('click', () => d.close());
  keyInput.addEventListener('focus', () => keyInput.select());
}
