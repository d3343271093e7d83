// Same-origin calls to the admin API: cookie auth plus the X-Akhrot-UI header (CSRF defence).

export class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
  }
}

let onUnauthorized = () => {};
/** Called once whenever any call answers 401. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export async function request(method, path, body) {
  const headers = { 'X-Akhrot-UI': '1', Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError('Akhrot is not reachable. Is it still running?', 'NETWORK', 0);
  }
  let payload = null;
  try {
    payload = await res.json();
  } catch {
    payload = null;
  }
  if (res.status === 401) {
    onUnauthorized();
    throw new ApiError((payload && payload.error && payload.error.message) || 'Not signed in.', 'UNAUTHORIZED', 401);
  }
  if (payload && payload.status === 'success') return payload.data;
  if (payload && payload.status === 'error' && payload.error) {
    throw new ApiError(payload.error.message || 'The request failed.', payload.error.code || 'ERROR', res.status);
  }
  throw new ApiError(`Unexpected answer from Akhrot (HTTP ${res.status}).`, 'BAD_RESPONSE', res.status);
}

export const api = {
  get: (path) => request('GET', path),
  post: (path, body = {}) => request('POST', path, body),
  del: (path) => request('DELETE', path),
};

/** Encodes one path segment. */
export const seg = (s) => encodeURIComponent(String(s));

/** Builds a query string from the defined, non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
