// Settings: pause, approval timeout and rate limit, port, theme, the vault's facts, sign out.

import { h, clear, field, toast, toastError, busy, pageHeader, formError, extLink } from '../dom.js';
import { api } from '../api.js';
import { state, on, emit, setPaused } from '../store.js';

const THEME_KEY = 'akhrot-theme';

export function currentTheme() {
  try {
    const t = localStorage.getItem(THEME_KEY);
    return t === 'light' || t === 'dark' ? t : 'system';
  } catch {
    return 'system';
  }
}

export function setTheme(t) {
  try {
    if (t === 'system') localStorage.removeItem(THEME_KEY);
    else localStorage.setItem(THEME_KEY, t);
  } catch {
    /* storage refused: still apply for this page */
  }
  if (t === 'system') document.documentElement.removeAttribute('data-theme');
  else document.documentElement.setAttribute('data-theme', t);
}

function section(title, desc, ...body) {
  const id = `set-${title.toLowerCase().replace(/[^a-z]+/g, '-')}`;
  return h('section', { class: 'card settings-card', 'aria-labelledby': id },
    h('h2', { class: 'card-title', id }, title),
    desc ? h('p', { class: 'muted small' }, desc) : null,
    body);
}

export function mount(root) {
  let settings = null;

  /* pause */
  const pause = h('input', { type: 'checkbox', class: 'switch', role: 'switch', id: 'pause-toggle', 'data-testid': 'pause-toggle' });
  const pauseRow = h('div', { class: 'switch-row' },
    pause,
    h('label', { for: 'pause-toggle' }, h('span', { class: 'switch-label' }, 'Pause all agents'),
      h('span', { class: 'hint' }, 'While on, every agent request is refused at once, whatever its policy. Connections and keys stay as they are.')));
  let switching = false;
  const syncPause = () => {
    if (!switching) pause.checked = !!(state.status && state.status.paused);
  };
  pause.addEventListener('change', async () => {
    const want = pause.checked;
    switching = true;
    pause.setAttribute('aria-busy', 'true');
    try {
      const r = await api.post('/admin/pause', { paused: want });
      setPaused(r.paused);
      toast(r.paused ? 'Paused: every agent request is refused until you resume.' : 'Resumed: agents get answers again.', r.paused ? 'info' : 'success');
    } catch (err) {
      toastError(err);
    } finally {
      switching = false;
      pause.removeAttribute('aria-busy');
      syncPause();
    }
  });

  /* timeout and rate limit */
  const limitsErr = formError();
  const timeout = h('input', { type: 'number', name: 'approvalTimeoutSecs', min: '5', max: '86400', step: '1', required: true, 'data-testid': 'approval-timeout', inputmode: 'numeric' });
  const rate = h('input', { type: 'number', name: 'rateLimitPerMinute', min: '0', max: '1000000', step: '1', required: true, 'data-testid': 'rate-limit', inputmode: 'numeric' });
  const saveLimits = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'save-limits' }, 'Save');
  const limitsForm = h('form', { class: 'settings-form' },
    h('div', { class: 'field-grid' },
      field('Approval timeout (seconds)', timeout, 'How long a token request waits for your answer before it is refused.'),
      field('Rate limit (requests per minute)', rate, 'Per agent key. 0 turns the limit off.')),
    limitsErr,
    h('div', { class: 'form-actions' }, saveLimits));
  limitsForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    limitsErr.clear();
    const body = { approvalTimeoutSecs: Number(timeout.value), rateLimitPerMinute: Number(rate.value) };
    if (!Number.isInteger(body.approvalTimeoutSecs) || !Number.isInteger(body.rateLimitPerMinute)) {
      limitsErr.show('Enter whole numbers.');
      return;
    }
    busy(saveLimits, true);
    try {
      settings = await api.post('/admin/settings', body);
      fill();
      toast('Saved. The new timeout and rate limit apply now.', 'success');
    } catch (err) {
      limitsErr.show(err);
    } finally {
      busy(saveLimits, false);
    }
  });

  /* port */
  const portErr = formError();
  const port = h('input', { type: 'number', name: 'port', min: '1', max: '65535', step: '1', required: true, 'data-testid': 'port', inputmode: 'numeric' });
  const portNote = h('p', { class: 'hint', 'data-testid': 'port-note' });
  const savePort = h('button', { type: 'submit', class: 'btn', 'data-testid': 'save-port' }, 'Save port');
  const portForm = h('form', { class: 'settings-form' },
    h('div', { class: 'field-grid' }, field('Port on 127.0.0.1', port, 'Takes effect after restart.')),
    portNote, portErr,
    h('div', { class: 'form-actions' }, savePort));
  portForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    portErr.clear();
    const value = Number(port.value);
    if (!Number.isInteger(value) || value < 1 || value > 65535) {
      portErr.show('Enter a port between 1 and 65535.');
      return;
    }
    busy(savePort, true);
    try {
      settings = await api.post('/admin/settings', { port: value });
      fill();
      toast(settings.restartRequired ? `Saved. Akhrot uses port ${value} after its next restart.` : 'Saved.', 'success');
    } catch (err) {
      portErr.show(err);
    } finally {
      busy(savePort, false);
    }
  });

  /* theme */
  const theme = currentTheme();
  const themeGroup = h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': 'Theme' },
    [['system', 'System'], ['light', 'Light'], ['dark', 'Dark']].map(([v, l]) => h('label', { class: 'segment' },
      h('input', { type: 'radio', name: 'theme', value: v, checked: theme === v, 'data-testid': `theme-${v}`, onchange: () => setTheme(v) }),
      h('span', null, l))));

  /* notifications (asked only when the user presses the button) */
  const notifyBox = h('div', { class: 'notify' });
  function renderNotify() {
    if (!('Notification' in window)) {
      clear(notifyBox, h('p', { class: 'muted small' }, 'This browser has no desktop notifications.'));
      return;
    }
    const perm = Notification.permission;
    if (perm === 'granted') clear(notifyBox, h('p', { class: 'small' }, 'On: a desktop notification appears when an agent asks for approval.'));
    else if (perm === 'denied') clear(notifyBox, h('p', { class: 'muted small' }, 'Blocked in this browser’s site settings for this page.'));
    else {
      clear(notifyBox, h('button', {
        type: 'button', class: 'btn', 'data-testid': 'enable-notifications',
        onclick: async () => {
          try {
            await Notification.requestPermission();
          } catch {
            /* older API shape; nothing to do */
          }
          renderNotify();
        },
      }, 'Notify me of approval requests'));
    }
  }
  renderNotify();

  /* facts */
  const facts = h('dl', { class: 'kv facts', 'data-testid': 'vault-facts' });
  function fill() {
    const st = state.status || {};
    const srv = st.server || {};
    const s = settings || {
      port: srv.port, configuredPort: null, approvalTimeoutSecs: srv.approvalTimeoutSecs, rateLimitPerMinute: srv.rateLimitPerMinute,
      keySource: st.vault && st.vault.keySource, vaultPath: st.vault && st.vault.path, version: srv.version, baseUrl: srv.baseUrl,
    };
    if (document.activeElement !== timeout && s.approvalTimeoutSecs !== undefined) timeout.value = String(s.approvalTimeoutSecs);
    if (document.activeElement !== rate && s.rateLimitPerMinute !== undefined) rate.value = String(s.rateLimitPerMinute);
    const nextPort = s.configuredPort || s.port;
    if (document.activeElement !== port && nextPort !== undefined) port.value = String(nextPort);
    portNote.textContent = s.port === undefined ? ''
      : s.configuredPort && s.configuredPort !== s.port
        ? `Listening on ${s.port} now; port ${s.configuredPort} applies after a restart.`
        : `Listening on ${s.port} now.`;
    const row = (k, v, testid) => (v === undefined || v === null || v === '' ? null : [h('dt', null, k), h('dd', { class: 'code', 'data-testid': testid }, v)]);
    clear(facts,
      [h('dt', null, 'Vault key'), h('dd', { 'data-testid': 'key-source' }, s.keySource === 'passphrase' ? 'Passphrase' : s.keySource === 'keyring' ? 'OS keyring' : '—')],
      row('Vault file', s.vaultPath, 'vault-path'),
      row('Vault id', st.vault && st.vault.vaultId, 'vault-id'),
      row('Data directory', s.dataDir, 'data-dir'),
      row('Config file', s.configPath, 'config-path'),
      row('Version', s.version, 'app-version'),
      s.baseUrl ? [h('dt', null, 'API base URL'), h('dd', { class: 'code', 'data-testid': 'base-url' }, s.baseUrl, ' ',
        extLink(`${s.baseUrl}/ai/skill`, 'skill document', { class: 'ext small' }))] : null);
  }

  const signOut = h('button', { type: 'button', class: 'btn btn-danger-quiet', 'data-testid': 'sign-out' }, 'Sign out');
  signOut.addEventListener('click', async () => {
    busy(signOut, true);
    try {
      await api.post('/admin/logout', {});
    } catch (err) {
      if (err.code !== 'UNAUTHORIZED') {
        toastError(err);
        busy(signOut, false);
        return;
      }
    }
    emit('signed-out');
  });

  root.append(h('div', { class: 'page-inner', 'data-testid': 'page-settings' },
    pageHeader('Settings', 'How this Akhrot answers agents, and where it keeps things.'),
    h('div', { class: 'settings-grid' },
      section('Agents', null, pauseRow),
      section('Approvals and limits', null, limitsForm),
      section('Network', 'Akhrot listens on the loopback interface only.', portForm),
      section('Appearance', null, themeGroup, h('p', { class: 'hint' }, 'System follows your operating system’s light or dark setting.')),
      section('Notifications', null, notifyBox),
      section('Vault', 'Secrets are encrypted at rest; the key comes from the OS keyring or your passphrase.', facts),
      section('Session', 'Ends this browser window’s sign-in. Agents are not affected.', h('div', { class: 'form-actions' }, signOut)))));

  syncPause();
  fill();
  api.get('/admin/settings').then((s) => { settings = s; fill(); }).catch(toastError);
  const offs = [on('status', () => { syncPause(); fill(); }), on('paused', syncPause)];
  return () => offs.forEach((off) => off());
}
