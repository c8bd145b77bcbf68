// The single page's entry point: language and theme first, then the server's auth status decides
// between first run, login and the app; hash routes (#/c/<id>, #/settings, #/admin/...) pick the view.
import { api, setCsrfToken } from "./api.js";
import { clear, h } from "./dom.js";
import { onLanguageChange, preferredLanguage, setLanguage, t } from "./i18n.js";
import { applyTheme } from "./theme.js";
import { renderLogin, renderSetup } from "./views/auth.js";
import { renderChat } from "./views/chat.js";
import { renderSettings } from "./views/settings.js";
import { renderAdmin } from "./views/admin.js";
import { shell } from "./views/shell.js";

const LOCAL_CHOICE = "haven.localMode";

export const session = {
  status: null,
  user: null,
  get isLocal() { return Boolean(this.user && this.user.local); },
  get isAdmin() { return Boolean(this.user && this.user.role === "admin"); },
};

const root = document.getElementById("app");
let currentCleanup = null;

export function navigate(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

export async function refreshStatus() {
  const status = await api.get("/api/v1/auth/status");
  session.status = status;
  session.user = status.user;
  setCsrfToken(status.csrf_token);
  return status;
}

export function signedIn(body) {
  session.user = body.user;
  setCsrfToken(body.csrf_token);
  if (session.status) session.status.setup_required = false;
}

/** Back to the login (or first-run) page; `server: false` when the server has ended the session already. */
export async function signOut({ server = true, notice = null } = {}) {
  if (server) {
    try {
      await api.post("/api/v1/auth/logout");
    } catch {
      // Already signed out on the server: nothing to undo.
    }
  }
  setCsrfToken(null);
  session.user = null;
  localStorage.removeItem(LOCAL_CHOICE);
  await refreshStatus().catch(() => null);
  navigate(notice ? `#/login?${notice}=1` : "#/login");
}

export function chooseLocalMode() {
  localStorage.setItem(LOCAL_CHOICE, "1");
  navigate("#/");
}

function parseRoute() {
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query) };
}

async function route() {
  if (currentCleanup) {
    currentCleanup();
    currentCleanup = null;
  }
  const { parts, params } = parseRoute();
  const status = session.status;
  const first = parts[0] || "";
  // Which screens the auth state allows.
  if (status.setup_required && !(session.isLocal && localStorage.getItem(LOCAL_CHOICE)) && first !== "setup") {
    return navigate("#/setup");
  }
  if (!status.setup_required && !session.user && first !== "login") {
    const next = first ? `#/${parts.join("/")}` : "";
    return navigate(next ? `#/login?next=${encodeURIComponent(next)}` : "#/login");
  }
  if (first === "setup" && !status.setup_required) return navigate("#/");
  if (first === "login" && session.user) return navigate(params.get("next") || "#/");

  clear(root);
  root.removeAttribute("aria-busy");
  root.className = "";
  let view;
  if (first === "setup") view = renderSetup();
  else if (first === "login") view = renderLogin(params.get("next"));
  else if (first === "settings") view = shell("settings", renderSettings());
  else if (first === "admin" && session.isAdmin) view = shell("admin", renderAdmin(parts[1] || "users", parts[2]));
  else {
    const chat = renderChat(first === "c" ? parts[1] : null);
    currentCleanup = chat.cleanup;
    view = shell("chat", chat.element);
  }
  root.append(view);
  const heading = root.querySelector("[data-autofocus]") || root.querySelector("h1");
  if (heading) {
    if (!heading.hasAttribute("tabindex") && !/^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(heading.tagName)) {
      heading.setAttribute("tabindex", "-1");
    }
    heading.focus({ preventScroll: true });
  }
}

function fatal(message) {
  clear(root);
  root.removeAttribute("aria-busy");
  root.append(h("main", { class: "centered" }, h("div", { class: "card" },
    h("h1", { text: "Haven" }), h("p", { class: "error", role: "alert", text: message }),
    h("button", { type: "button", class: "primary", onclick: () => window.location.reload(), text: t("common.retry") }))));
}

async function boot() {
  applyTheme();
  await setLanguage(preferredLanguage());
  try {
    await refreshStatus();
  } catch (exc) {
    fatal(t("error.unreachable", { detail: exc.message }));
    return;
  }
  window.addEventListener("hashchange", () => route());
  window.addEventListener("haven:signed-out", async () => {
    session.user = null;
    setCsrfToken(null);
    await refreshStatus().catch(() => null);
    const { parts } = parseRoute();
    const here = parts.length ? `#/${parts.join("/")}` : "#/";
    if (parts[0] !== "login") navigate(`#/login?next=${encodeURIComponent(here)}&expired=1`);
  });
  onLanguageChange(() => route());
  route();
}

boot();
