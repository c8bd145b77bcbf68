// First run (create the admin account, show its recovery code once, or keep local single-user mode)
// and the login page. A wrong password gets one plain message and no detail.
import { api } from "../api.js";
import { copyText, field, h } from "../dom.js";
import { t } from "../i18n.js";
import { chooseLocalMode, navigate, session, signedIn } from "../app.js";
import { languageSwitch } from "./shell.js";

function page(...children) {
  return h("main", { class: "centered", id: "main" },
    h("div", { class: "corner-tools" }, languageSwitch()),
    h("div", { class: "card" }, h("div", { class: "brand big", "aria-hidden": "true" }, h("span", { class: "brand-mark" }), "Haven"),
      ...children));
}

function errorBox() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

function showError(box, text) {
  box.textContent = text;
  box.hidden = false;
}

export function passwordRule() {
  const policy = (session.status && session.status.password_policy) || { min_length: 12 };
  return t("auth.passwordRule", { n: policy.min_length });
}

export function renderSetup() {
  const name = field(t("auth.name"), h("input", { type: "text", autocomplete: "username", required: true,
    maxlength: 64, pattern: "[A-Za-z0-9_.\\-]+", value: "admin" }), t("auth.nameRule"));
  const password = field(t("auth.password"), h("input", { type: "password", autocomplete: "new-password",
    required: true, minlength: (session.status.password_policy || {}).min_length || 12 }), passwordRule());
  const confirm = field(t("auth.confirmPassword"), h("input", { type: "password", autocomplete: "new-password", required: true }));
  const error = errorBox();
  const submit = h("button", { type: "submit", class: "primary", text: t("setup.create") });
  const form = h("form", { class: "stack", novalidate: true }, name.wrap, password.wrap, confirm.wrap, error, submit);
  const container = page(
    h("h1", { text: t("setup.title") }),
    h("p", { text: t("setup.intro") }),
    form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (!name.input.value.trim()) return showError(error, t("auth.nameRequired"));
    if (password.input.value !== confirm.input.value) return showError(error, t("auth.mismatch"));
    submit.disabled = true;
    try {
      const body = await api.post("/api/v1/auth/setup", { name: name.input.value.trim(), password: password.input.value });
      signedIn(body);
      showRecoveryCode(container, body.recovery_code);
    } catch (exc) {
      showError(error, exc.status === 409 ? t("setup.done") : exc.message);
      submit.disabled = false;
    }
  });
  if (session.isLocal) {
    container.querySelector(".card").append(
      h("div", { class: "local-choice" },
        h("h2", { text: t("local.title") }),
        h("p", { text: t("local.explain") }),
        h("button", { type: "button", class: "secondary", onclick: chooseLocalMode, text: t("local.continue") })));
  }
  return container;
}

function showRecoveryCode(container, code) {
  const card = container.querySelector(".card");
  const confirm = h("input", { type: "checkbox", id: "recovery-saved" });
  const next = h("button", { type: "button", class: "primary", disabled: true, text: t("setup.continue"),
    onclick: () => navigate("#/") });
  confirm.addEventListener("change", () => { next.disabled = !confirm.checked; });
  const copy = h("button", { type: "button", class: "secondary", text: t("common.copy"),
    onclick: async () => { if (await copyText(code)) copy.textContent = t("common.copied"); } });
  card.replaceChildren(
    h("h1", { text: t("setup.recoveryTitle") }),
    h("p", { text: t("setup.recoveryExplain") }),
    h("p", { class: "secret", "data-testid": "recovery-code" }, h("code", { text: code })),
    copy,
    h("div", { class: "check" }, confirm, h("label", { for: "recovery-saved", text: t("setup.recoverySaved") })),
    next);
  card.querySelector("h1").setAttribute("tabindex", "-1");
  card.querySelector("h1").focus();
}

export function renderLogin(next) {
  const params = new URLSearchParams(window.location.hash.split("?")[1] || "");
  const name = field(t("auth.name"), h("input", { type: "text", autocomplete: "username", required: true }));
  const password = field(t("auth.password"), h("input", { type: "password", autocomplete: "current-password", required: true }));
  const error = errorBox();
  const submit = h("button", { type: "submit", class: "primary", text: t("auth.signIn") });
  const form = h("form", { class: "stack" }, name.wrap, password.wrap, error, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      const body = await api.post("/api/v1/auth/login", { name: name.input.value.trim(), password: password.input.value });
      signedIn(body);
      navigate(next && next.startsWith("#/") ? next : "#/");
    } catch (exc) {
      if (exc.status === 401) showError(error, t("auth.wrong"));
      else if (exc.status === 429) showError(error, t("auth.tooMany", { s: exc.retryAfter || 60 }));
      else showError(error, exc.status === 0 ? t("error.network") : exc.message);
      submit.disabled = false;
      password.input.select();
    }
  });
  return page(
    h("h1", { text: t("auth.title") }),
    params.get("expired") ? h("p", { class: "notice", role: "status", text: t("auth.expired") }) : null,
    params.get("deleted") ? h("p", { class: "notice", role: "status", text: t("auth.accountDeleted") }) : null,
    form);
}
