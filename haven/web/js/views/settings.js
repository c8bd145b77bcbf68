// The user's settings: API keys (created, shown once, revoked), language, theme, retention, password,
// export of all their conversations, and deleting the account (password re-typed).
import { api } from "../api.js";
import { clear, copyText, field, h, modal } from "../dom.js";
import { LANGUAGES, formatDateTime, language, setLanguage, t } from "../i18n.js";
import { applyTheme, themeChoice } from "../theme.js";
import { session, signOut } from "../app.js";
import { passwordRule } from "./auth.js";

function section(titleKey, ...children) {
  const id = `section-${titleKey.replace(/\W/g, "-")}`;
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id, text: t(titleKey) }), ...children);
}

function status() {
  return h("p", { class: "form-status", role: "status" });
}

function say(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function preferences() {
  const lang = field(t("settings.language"), h("select", { onchange: (e) => setLanguage(e.target.value, { save: true }) },
    LANGUAGES.map((l) => h("option", { value: l.code, lang: l.code, selected: l.code === language(), text: l.name }))));
  const current = themeChoice();
  const themeName = "theme";
  const theme = h("fieldset", { class: "choices" }, h("legend", { text: t("settings.theme") }),
    ["system", "light", "dark"].map((choice) => {
      const id = `theme-${choice}`;
      return h("span", { class: "choice" },
        h("input", { type: "radio", name: themeName, id, value: choice, checked: choice === current,
          onchange: () => applyTheme(choice) }),
        h("label", { for: id, text: t(`settings.theme.${choice}`) }));
    }));
  return section("settings.preferences", lang.wrap, theme);
}

function retention() {
  const input = h("input", { type: "number", min: 1, max: 36500, step: 1, inputmode: "numeric",
    value: session.user.retention_days ?? "", placeholder: t("settings.retentionForever") });
  const f = field(t("settings.retentionDays"), input, t("settings.retentionHint"));
  const out = status();
  const form = h("form", { class: "stack" }, f.wrap,
    h("button", { type: "submit", class: "secondary", text: t("common.save") }), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim() === "" ? null : parseInt(input.value, 10);
    try {
      session.user = await api.patch("/api/v1/me", { retention_days: value });
      say(out, t("common.saved"));
    } catch (exc) {
      say(out, exc.message, true);
    }
  });
  return section("settings.retention", form);
}

function password() {
  const current = field(t("settings.currentPassword"), h("input", { type: "password", autocomplete: "current-password", required: true }));
  const next = field(t("settings.newPassword"), h("input", { type: "password", autocomplete: "new-password", required: true }), passwordRule());
  const out = status();
  const form = h("form", { class: "stack" }, current.wrap, next.wrap,
    h("button", { type: "submit", class: "secondary", text: t("settings.changePassword") }), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api.post("/api/v1/me/password", { current_password: current.input.value, new_password: next.input.value });
      form.reset();
      say(out, t("settings.passwordChanged"));
    } catch (exc) {
      say(out, exc.status === 401 ? t("auth.wrong") : exc.message, true);
    }
  });
  return section("settings.password", form);
}

function apiKeys() {
  const table = h("div", { class: "table-wrap" });
  const out = status();
  async function load() {
    let body;
    try {
      body = await api.get("/api/v1/me/keys");
    } catch (exc) {
      say(out, exc.message, true);
      return;
    }
    clear(table);
    if (!body.data.length) {
      table.append(h("p", { class: "muted", text: t("keys.none") }));
      return;
    }
    table.append(h("table", { class: "data" },
      h("caption", { class: "sr-only", text: t("keys.title") }),
      h("thead", {}, h("tr", {}, [t("keys.label"), t("keys.prefix"), t("keys.created"), t("keys.lastUsed"),
        t("keys.expires"), ""].map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, body.data.map((key) => h("tr", {},
        h("td", { text: key.label || "—" }), h("td", {}, h("code", { text: key.prefix })),
        h("td", { text: formatDateTime(key.created_at) }), h("td", { text: formatDateTime(key.last_used_at) || "—" }),
        h("td", { text: formatDateTime(key.expires_at) || t("keys.never") }),
        h("td", {}, h("button", { type: "button", class: "danger small", "aria-label": t("keys.revokeNamed", { label: key.label || key.prefix }),
          text: t("keys.revoke"), onclick: () => revoke(key) })))))));
  }
  async function revoke(key) {
    try {
      await api.del(`/api/v1/me/keys/${key.id}`);
      say(out, t("keys.revoked"));
      load();
    } catch (exc) {
      say(out, exc.message, true);
    }
  }
  const label = field(t("keys.label"), h("input", { type: "text", maxlength: 100, required: true, placeholder: t("keys.labelExample") }));
  const expires = field(t("keys.expiresDays"), h("input", { type: "number", min: 1, max: 3650, step: 1, placeholder: t("keys.never") }));
  const form = h("form", { class: "stack inline-form" }, label.wrap, expires.wrap,
    h("button", { type: "submit", class: "primary", text: t("keys.create") }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const days = expires.input.value.trim();
    let body;
    try {
      body = await api.post("/api/v1/me/keys", { label: label.input.value.trim() || "key",
        expires_days: days ? parseInt(days, 10) : null });
    } catch (exc) {
      say(out, exc.message, true);
      return;
    }
    form.reset();
    showSecret(body.secret);
    load();
  });
  load();
  const intro = h("p", { class: "muted", text: t("keys.explain", { url: `${window.location.origin}/v1` }) });
  return section("keys.title", intro, form, out, table);
}

function showSecret(secret) {
  const copy = h("button", { type: "button", class: "secondary", text: t("common.copy"),
    onclick: async () => { if (await copyText(secret)) copy.textContent = t("common.copied"); } });
  const dialog = modal(t("keys.createdTitle"), h("div", { class: "stack" },
    h("p", { text: t("keys.shownOnce") }),
    h("p", { class: "secret" }, h("code", { "data-testid": "new-key", text: secret })),
    h("div", { class: "row" }, copy,
      h("button", { type: "button", class: "primary", text: t("common.done"), onclick: () => dialog.close() }))));
}

function exportData() {
  return section("settings.export",
    h("p", { text: t("settings.exportExplain") }),
    h("div", { class: "row" },
      h("a", { class: "button secondary", href: "/api/v1/conversations/export?format=json", download: "", text: "JSON" }),
      h("a", { class: "button secondary", href: "/api/v1/conversations/export?format=markdown", download: "", text: "Markdown" })));
}

function deleteAccount() {
  // The password is re-typed (the server checks it like a login); the server refuses the last admin.
  const pass = field(t("settings.deleteAccountPassword"),
    h("input", { type: "password", autocomplete: "current-password", required: true }));
  const out = h("p", { class: "form-status", role: "alert" });
  const form = h("form", { class: "stack" }, h("p", { text: t("settings.deleteAccountExplain") }), pass.wrap,
    h("button", { type: "submit", class: "danger", text: t("settings.deleteAccountButton") }), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say(out, "");
    try {
      await api.del("/api/v1/me", { password: pass.input.value });
    } catch (exc) {
      pass.input.value = "";
      say(out, exc.code === "invalid_credentials" ? t("settings.deleteAccountWrong")
        : exc.status === 409 ? t("settings.deleteAccountLastAdmin") : exc.message, true);
      pass.input.setAttribute("aria-invalid", "true");
      pass.input.focus();
      return;
    }
    await signOut({ server: false, notice: "deleted" });
  });
  return section("settings.deleteAccount", form);
}

export function renderSettings() {
  const local = session.isLocal;
  const main = h("main", { class: "page", id: "main" }, h("h1", { text: t("settings.title") }),
    local ? h("p", { class: "notice", text: t("settings.localNote") }) : null,
    preferences(),
    local ? null : apiKeys(),
    local ? null : retention(),
    local ? null : password(),
    exportData(),
    local ? null : deleteAccount());
  return main;
}
