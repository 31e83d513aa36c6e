// Shared by every page: templates (Preact + htm), API calls with the session cookie, formatting.
const { h, render } = window.preact;
export const { useState, useEffect, useCallback, useRef } = window.preactHooks;
export const html = window.htm.bind(h);
export { render };

// The cookie alone signs a request in; this header (which only script can set) is what makes a
// cookie-only request CSRF-safe to the server, next to the browser's own Sec-Fetch-Site.
const CLIENT = { "X-Clearml-Client": "Console-1" };

export class ApiError extends Error {
  constructor(status, message, field, data) {
    super(message);
    this.status = status;
    this.field = field || null;
    this.data = data || {};
  }
}

// A session that ended (expired, signed out elsewhere, key revoked) sends the console back to sign-in.
function noticeSignedOut(resp, name) {
  if (resp.status === 401 && name !== "auth.login") window.dispatchEvent(new CustomEvent("console:signed-out"));
}

async function answer(resp) {
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  return body;
}

// A ClearML-style RPC endpoint: POST /api/<service>.<action> with a JSON body; the envelope's data.
export async function rpc(name, data = {}, headers = {}) {
  const resp = await fetch(`/api/${name}`, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", ...CLIENT, ...headers }, body: JSON.stringify(data),
  });
  noticeSignedOut(resp, name);
  const body = await answer(resp);
  const meta = (body && body.meta) || {};
  if (!resp.ok) {
    const errData = meta.error_data || {};
    throw new ApiError(resp.status, meta.result_msg || resp.statusText, errData.field, errData);
  }
  return body ? body.data : {};
}

// A REST endpoint (registry, deployments, render manager): plain JSON both ways.
export async function rest(method, path, data) {
  const init = { method, credentials: "same-origin", headers: { ...CLIENT } };
  if (data !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(data);
  }
  const resp = await fetch(path, init);
  noticeSignedOut(resp, path);
  const body = await answer(resp);
  if (!resp.ok) {
    const err = body && typeof body === "object" ? body : { message: String(body || resp.statusText) };
    throw new ApiError(resp.status, err.message || resp.statusText, err.field, err);
  }
  return body;
}

// Run fn now and every ms while the component is shown; fn gets nothing, its errors are shown.
export function usePoll(fn, ms, deps = []) {
  const [error, setError] = useState(null);
  useEffect(() => {
    let live = true;
    let timer = null;
    const tick = async () => {
      try { await fn(); if (live) setError(null); } catch (e) { if (live) setError(e); }
      if (live && ms) timer = setTimeout(tick, ms);
    };
    tick();
    return () => { live = false; clearTimeout(timer); };
  }, deps);
  return error;
}

export function when(value) {
  if (!value) return "—";
  const d = new Date(value);
  if (isNaN(d)) return String(value);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function ago(value) {
  if (!value) return "never";
  const s = Math.max(0, Math.round((Date.now() - new Date(value).getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function Status({ value }) {
  return html`<span class=${"status status-" + String(value || "none").replace(/[^a-z_]/g, "")}>${value || "—"}</span>`;
}

export function ErrorNote({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message}${error.field ? html` (field <code>${error.field}</code>)` : ""}</p>`;
}
