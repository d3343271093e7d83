// Shared state, loaders and a tiny publish/subscribe between the shell and the pages.

import { api } from './api.js';

export const state = {
  status: null,
  providers: [],
  connections: [],
  clients: [],
  keys: [],
  /** Pending approval prompts by id, in arrival order. */
  approvals: new Map(),
  signedOut: false,
  /** Parts loaded at least once. */
  loaded: new Set(),
};

const listeners = new Map();
/** Bumped on every local pause switch (see the status loader). */
let pauseSeq = 0;

/** Subscribes to a topic; returns the unsubscribe function. */
export function on(topic, fn) {
  if (!listeners.has(topic)) listeners.set(topic, new Set());
  listeners.get(topic).add(fn);
  return () => listeners.get(topic).delete(fn);
}

export function emit(topic, data) {
  for (const fn of [...(listeners.get(topic) || [])]) {
    try {
      fn(data);
    } catch (e) {
      // A page's bug must not stop the others from updating.
      setTimeout(() => { throw e; });
    }
  }
}

const loaders = {
  async status() {
    const seq = pauseSeq;
    const status = await api.get('/admin/status');
    // A pause switched while this was on its way is newer than what it says.
    if (seq !== pauseSeq && state.status) status.paused = state.status.paused;
    state.status = status;
    setApprovals(state.status.pendingApprovals || []);
  },
  async providers() {
    state.providers = await api.get('/admin/providers');
  },
  async connections() {
    state.connections = await api.get('/admin/connections');
  },
  async clients() {
    state.clients = await api.get('/admin/clients');
  },
  async keys() {
    state.keys = await api.get('/admin/keys');
  },
  async approvals() {
    setApprovals(await api.get('/admin/approvals'));
  },
};

function setApprovals(list) {
  state.approvals = new Map(list.map((p) => [p.id, p]));
  emit('approvals');
}

/** Reloads the named parts (all when none are named) and tells their subscribers. */
export async function load(...what) {
  const names = what.length ? what : Object.keys(loaders);
  const results = await Promise.allSettled(names.map((n) => loaders[n]()));
  names.forEach((n, i) => {
    if (results[i].status === 'fulfilled') {
      state.loaded.add(n);
      emit(n);
    }
  });
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

export function addApproval(prompt) {
  state.approvals.set(prompt.id, prompt);
  emit('approvals');
}

export function removeApproval(id) {
  if (state.approvals.delete(id)) emit('approvals');
}

export function setPaused(paused) {
  pauseSeq += 1;
  if (state.status) state.status.paused = paused;
  emit('paused', paused);
}

export const providerByCode = (code) => state.providers.find((p) => p.code === code);
export const providerName = (code) => (code === '*' ? 'Every provider' : (providerByCode(code) || {}).name || code);
export const clientFor = (code) => state.clients.find((c) => c.provider === code);
export const baseUrl = () => (state.status && state.status.server && state.status.server.baseUrl) || window.location.origin;
