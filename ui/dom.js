// DOM helpers. Server strings are untrusted: text always goes in through textContent.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (['value', 'checked', 'disabled', 'hidden', 'readOnly', 'required', 'selected', 'open'].includes(k)) el[k] = v;
    else if (k === 'style') throw new Error('inline styles are not allowed by the CSP');
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** h('div', {class: 'x', 'data-testid': 'y', onclick: fn}, 'text', child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A small stroke icon from path data (24×24 grid). */
export function icon(d, cls = 'icon') {
  return s('svg', { class: cls, viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' },
    ...[].concat(d).map((p) => s('path', { d: p })));
}

export const ICONS = {
  copy: ['M9 9h10v10H9z', 'M5 15V5h10'],
  external: ['M14 5h5v5', 'M19 5l-8 8', 'M17 14v5H5V7h5'],
  close: ['M6 6l12 12', 'M18 6L6 18'],
  search: ['M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14z', 'M16 16l4 4'],
  warn: ['M12 4l9 16H3z', 'M12 10v4', 'M12 17v.5'],
  check: ['M5 12l5 5L19 7'],
  plus: ['M12 5v14', 'M5 12h14'],
  key: ['M8 15a4 4 0 1 1 3.5-6H21v3h-2v3h-3v-3h-4.5A4 4 0 0 1 8 15z'],
  shield: ['M12 3l8 3v6c0 4.5-3.5 8-8 9-4.5-1-8-4.5-8-9V6z'],
};

/* ---------- provider monograms ---------- */

function hash(str) {
  let x = 0x811c9dc5;
  for (let i = 0; i < str.length; i++) {
    x ^= str.charCodeAt(i);
    x = Math.imul(x, 0x01000193) >>> 0;
  }
  return x;
}

export function initials(name, code) {
  const clean = String(name || code || '?').replace(/\(.*?\)/g, ' ').trim();
  const words = clean.split(/[^A-Za-z0-9]+/).filter(Boolean);
  if (words.length === 0) return '?';
  if (words.length > 1) return (words[0][0] + words[1][0]).toUpperCase();
  const w = words[0];
  const inner = w.slice(1).match(/[A-Z0-9]/);
  return inner ? (w[0] + inner[0]).toUpperCase() : w[0].toUpperCase();
}

const PALETTE = 12;
export function monogram(code, name, size = '') {
  return h('span', {
    class: ['mono', `mono-c${hash(String(code || name || '')) % PALETTE}`, size && `mono-${size}`],
    'aria-hidden': 'true',
  }, initials(name, code));
}

/* ---------- time ---------- */

const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const timeSecFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

export const fmt = {
  /** Unix seconds → "28 Nov 2026, 14:05". */
  dateTime: (secs) => (secs ? dateTimeFmt.format(new Date(secs * 1000)) : '—'),
  /** Unix ms → "14:05:09", with the day when it is not today. */
  stamp(ms) {
    const d = new Date(ms);
    const today = new Date();
    const t = timeSecFmt.format(d);
    return d.toDateString() === today.toDateString() ? t : `${dayFmt.format(d)}, ${t}`;
  },
  /** Unix seconds → "14:05" (or with the date when it is not today). */
  clock(secs) {
    const d = new Date(secs * 1000);
    return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : dateTimeFmt.format(d);
  },
  /** Unix ms → "2 minutes ago" / "in 3 hours". */
  relative(ms) {
    const diff = (ms - Date.now()) / 1000;
    const abs = Math.abs(diff);
    if (abs < 10) return 'just now';
    if (abs < 60) return relFmt.format(Math.round(diff), 'second');
    if (abs < 3600) return relFmt.format(Math.round(diff / 60), 'minute');
    if (abs < 86400) return relFmt.format(Math.round(diff / 3600), 'hour');
    return relFmt.format(Math.round(diff / 86400), 'day');
  },
  /** Seconds left → "1:05" / "0:09". */
  countdown(secsLeft) {
    const s = Math.max(0, Math.floor(secsLeft));
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, '0')}`;
  },
};

/** A <time> that the app's ticker keeps saying "3 min ago". */
export function relTime(ms, cls) {
  return h('time', {
    class: cls,
    datetime: new Date(ms).toISOString(),
    title: dateTimeFmt.format(new Date(ms)),
    'data-rel': String(ms),
  }, fmt.relative(ms));
}

/** Updates every relative time and countdown in the document (called by a timer). */
export function tick(root = document) {
  for (const el of root.querySelectorAll('[data-rel]')) {
    const t = fmt.relative(Number(el.dataset.rel));
    if (el.textContent !== t) el.textContent = t;
  }
  const now = Date.now() / 1000;
  for (const el of root.querySelectorAll('[data-expires]')) {
    const left = Number(el.dataset.expires) - now;
    const t = left > 0 ? fmt.countdown(left) : 'expired';
    if (el.textContent !== t) el.textContent = t;
    el.classList.toggle('urgent', left < 20);
  }
}

/* ---------- toasts ---------- */

export function toast(message, kind = 'info') {
  const region = document.getElementById('toasts');
  if (!region) return;
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' }, icon(ICONS.close));
  const el = h('div', { class: ['toast', `toast-${kind}`], 'data-testid': 'toast', role: kind === 'error' ? 'alert' : 'status' },
    h('span', { class: 'toast-text' }, message), close);
  let timer;
  const dismiss = () => {
    clearTimeout(timer);
    el.classList.add('leaving');
    setTimeout(() => el.remove(), 180);
  };
  close.addEventListener('click', dismiss);
  const arm = () => { timer = setTimeout(dismiss, kind === 'error' ? 9000 : 5000); };
  el.addEventListener('mouseenter', () => clearTimeout(timer));
  el.addEventListener('mouseleave', arm);
  region.appendChild(el);
  while (region.children.length > 4) region.firstElementChild.remove();
  arm();
}

export function toastError(err) {
  if (err && err.code === 'UNAUTHORIZED') return; // the signed-out screen says it
  toast((err && err.message) || 'Something went wrong.', 'error');
}

/* ---------- dialogs ---------- */

let dialogSeq = 0;

/**
 * Opens a modal <dialog>. Escape and the × button close it; focus returns to the element
 * that had it (or, when a re-render replaced that element, to its successor with the same test id).
 */
export function openDialog({ title, testid, body = [], actions = [], wide = false, focus, onClose, form }) {
  const id = `dlg-${++dialogSeq}`;
  const opener = document.activeElement;
  const openerTestId = opener && opener.getAttribute && opener.getAttribute('data-testid');
  const closeBtn = h('button', { type: 'button', class: 'icon-btn dialog-x', 'aria-label': 'Close', 'data-testid': 'dialog-close' }, icon(ICONS.close));
  const content = h(form ? 'form' : 'div', { class: 'dialog-body-wrap' },
    h('header', { class: 'dialog-head' }, h('h2', { id: `${id}-title` }, title), closeBtn),
    h('div', { class: 'dialog-body' }, body),
    actions.length ? h('footer', { class: 'dialog-actions' }, actions) : null,
  );
  const dialog = h('dialog', { class: ['dialog', wide && 'dialog-wide'], 'data-testid': testid, 'aria-labelledby': `${id}-title` }, content);
  closeBtn.addEventListener('click', () => dialog.close());
  if (form) content.addEventListener('submit', (e) => { e.preventDefault(); form(e, content); });
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (onClose) onClose();
    let target = opener && opener.isConnected ? opener : null;
    if (!target && openerTestId) target = document.querySelector(`[data-testid="${CSS.escape(openerTestId)}"]`);
    if (target && typeof target.focus === 'function') target.focus();
  });
  document.body.appendChild(dialog);
  dialog.showModal();
  const first = (typeof focus === 'function' ? focus(dialog) : focus)
    || dialog.querySelector('input:not([type=hidden]):not([readonly]):not([disabled]), select, textarea')
    || dialog.querySelector('.dialog-actions .btn-primary, .dialog-actions button');
  if (first) first.focus();
  return { dialog, form: form ? content : null, close: () => { if (dialog.open) dialog.close(); } };
}

/** Resolves true when the user confirms. */
export function confirmDialog({ title, message, confirmLabel = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    let answer = false;
    const cancel = h('button', { type: 'button', class: 'btn', 'data-testid': 'confirm-cancel' }, 'Cancel');
    const ok = h('button', { type: 'button', class: ['btn', danger ? 'btn-danger' : 'btn-primary'], 'data-testid': 'confirm-ok' }, confirmLabel);
    const d = openDialog({
      title,
      testid: 'confirm-dialog',
      body: [].concat(message).map((m) => (typeof m === 'string' ? h('p', null, m) : m)),
      actions: [cancel, ok],
      focus: () => cancel,
      onClose: () => resolve(answer),
    });
    cancel.addEventListener('click', () => d.close());
    ok.addEventListener('click', () => { answer = true; d.close(); });
  });
}

/* ---------- clipboard ---------- */

/** Copies text; when the clipboard is refused, selects `select` (an input) and asks for Ctrl+C. */
export async function copyText(text, select, what = 'Copied') {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} to the clipboard.`, 'success');
    return true;
  } catch {
    if (select) {
      select.focus();
      if (typeof select.select === 'function') select.select();
      else {
        const range = document.createRange();
        range.selectNodeContents(select);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
      }
    }
    const mac = /Mac|iPhone|iPad/.test(navigator.platform || '');
    toast(`The clipboard is not available here: the text is selected, press ${mac ? '⌘C' : 'Ctrl+C'}.`, 'info');
    return false;
  }
}

export function copyButton(getText, select, { label = 'Copy', testid, what } = {}) {
  return h('button', {
    type: 'button', class: 'btn btn-small', 'data-testid': testid,
    onclick: () => copyText(typeof getText === 'function' ? getText() : getText, typeof select === 'function' ? select() : select, what),
  }, icon(ICONS.copy), label);
}

/* ---------- small building blocks ---------- */

export function badge(text, kind = 'muted', attrs = {}) {
  return h('span', { class: ['badge', `badge-${kind}`], ...attrs }, text);
}

export function emptyState(title, text, extra) {
  return h('div', { class: 'empty', 'data-testid': 'empty-state' },
    h('p', { class: 'empty-title' }, title),
    text ? h('p', { class: 'empty-text' }, text) : null,
    extra || null);
}

export function extLink(href, label, attrs = {}) {
  if (!href) return null;
  return h('a', { href, target: '_blank', rel: 'noopener noreferrer', class: 'ext', ...attrs }, label, icon(ICONS.external, 'icon icon-sm'));
}

/** A labelled form field: label, control, hint. */
export function field(label, control, hint, { id } = {}) {
  const cid = id || control.id || `f-${++dialogSeq}`;
  control.id = cid;
  const hintEl = hint ? h('p', { class: 'hint', id: `${cid}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: cid }, label), control, hintEl);
}

export function busy(button, on) {
  button.disabled = on;
  button.classList.toggle('is-busy', on);
  if (on) button.setAttribute('aria-busy', 'true');
  else button.removeAttribute('aria-busy');
}

export function pageHeader(title, subtitle, ...extra) {
  return h('header', { class: 'page-head' },
    h('div', { class: 'page-head-text' }, h('h1', null, title), subtitle ? h('p', { class: 'page-sub' }, subtitle) : null),
    extra.length ? h('div', { class: 'page-head-extra' }, extra) : null);
}

/** An inline error line for forms and dialogs; `.show(err)` / `.clear()`. */
export function formError() {
  const el = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'form-error', hidden: true });
  el.show = (err) => { el.textContent = (err && err.message) || String(err); el.hidden = false; };
  el.clear = () => { el.textContent = ''; el.hidden = true; };
  return el;
}

/** "https://www.googleapis.com/auth/gmail.modify" → "gmail.modify" (full scope in the title). */
export function scopeChips(scopes, max = 8) {
  const list = scopes || [];
  if (list.length === 0) return null;
  const chip = (sc) => h('li', { class: 'chip chip-scope', title: sc }, /^https?:\/\//.test(sc) ? sc.replace(/\/+$/, '').split('/').pop() : sc);
  const shown = list.slice(0, max).map(chip);
  const rest = list.slice(max);
  const ul = h('ul', { class: 'chips', 'aria-label': 'Scopes' }, shown);
  if (rest.length) {
    const more = h('li', null, h('button', { type: 'button', class: 'chip chip-more', 'aria-label': `Show ${rest.length} more scopes` }, `+${rest.length} more`));
    more.firstChild.addEventListener('click', () => {
      const revealed = rest.map(chip);
      more.replaceWith(...revealed);
      revealed[0].setAttribute('tabindex', '-1');
      revealed[0].focus();
    });
    ul.appendChild(more);
  }
  return ul;
}
