// The frame around the signed-in views: a header with navigation, the language switch and sign-out,
// and the banner that says so when Haven runs in local single-user mode (no login).
import { h } from "../dom.js";
import { LANGUAGES, language, setLanguage, t } from "../i18n.js";
import { navigate, session, signOut } from "../app.js";

export function languageSwitch() {
  const select = h("select", {
    class: "language-switch",
    "aria-label": t("common.language"),
    onchange: (event) => setLanguage(event.target.value, { save: true }),
  }, LANGUAGES.map((lang) => h("option", { value: lang.code, lang: lang.code, selected: lang.code === language(),
    text: lang.name })));
  return select;
}

export function shell(active, content) {
  const link = (name, href, label) => h("a", { href, class: active === name ? "nav-link active" : "nav-link",
    "aria-current": active === name ? "page" : null, text: label });
  const nav = h("nav", { class: "top-nav", "aria-label": t("nav.main") },
    link("chat", "#/", t("nav.chat")),
    link("settings", "#/settings", t("nav.settings")),
    session.isAdmin && !session.isLocal ? link("admin", "#/admin/users", t("nav.admin")) : null);
  const user = session.user;
  const account = session.isLocal
    ? h("button", { type: "button", class: "ghost", onclick: () => navigate("#/setup"), text: t("local.createAccount") })
    : h("button", { type: "button", class: "ghost", onclick: () => signOut(), text: t("auth.signOut") });
  const header = h("header", { class: "app-header" },
    h("a", { href: "#/", class: "brand", "aria-label": t("app.home") }, h("span", { class: "brand-mark", "aria-hidden": "true" }), h("span", { class: "brand-name", text: "Haven" })),
    nav,
    h("div", { class: "header-tools" }, languageSwitch(),
      user && !user.local ? h("span", { class: "user-name", text: user.name }) : null, account));
  const banner = session.isLocal
    ? h("p", { class: "banner", role: "note", text: t("local.banner") })
    : null;
  return h("div", { class: `app-frame view-${active}` }, header, banner, content);
}
