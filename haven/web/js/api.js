// The UI's only way to the server: same-origin fetch with the session cookie, the CSRF header on every
// write (the token lives in memory only, from /api/v1/auth/status or login), and errors turned into
// ApiError with the server's readable message. A 401 on an authenticated route fires "haven:signed-out"
// so the app can return to the login page (keeping what the user was typing).

export class ApiError extends Error {
  constructor(status, message, { code = null, param = null, retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.param = param;
    this.retryAfter = retryAfter;
  }
}

const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken = null;

export function setCsrfToken(token) {
  csrfToken = token || null;
}

export function headersFor(method, extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (WRITE_METHODS.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  return headers;
}

/** The ApiError for a non-2xx response (OpenAI's {"error": {...}} or Ollama's {"error": "..."}). */
export async function errorFrom(response) {
  let message = response.statusText || `HTTP ${response.status}`;
  let code = null;
  let param = null;
  try {
    const body = await response.json();
    const error = body && body.error;
    if (typeof error === "string") {
      message = error;
    } else if (error && typeof error === "object") {
      message = error.message || message;
      code = error.code || null;
      param = error.param || null;
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : message;
    }
  } catch {
    // Not JSON: keep the status text.
  }
  const retry = response.headers.get("Retry-After");
  return new ApiError(response.status, message, { code, param, retryAfter: retry ? Number(retry) : null });
}

/** A 401 that means the session is gone (not a re-typed password that was wrong). */
export function signedOut(response, path, code = null) {
  return response.status === 401 && !path.startsWith("/api/v1/auth/") && code !== "invalid_credentials";
}

export async function request(method, path, body, { signal, raw = false } = {}) {
  const init = { method, credentials: "same-origin", headers: headersFor(method), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network");
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (signedOut(response, path, error.code)) window.dispatchEvent(new CustomEvent("haven:signed-out"));
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const api = {
  get: (path, opts) => request("GET", path, undefined, opts),
  post: (path, body, opts) => request("POST", path, body ?? {}, opts),
  patch: (path, body, opts) => request("PATCH", path, body, opts),
  del: (path, body, opts) => request("DELETE", path, body, opts),
};
