// Administration: users, models (pull with live progress, remove, metadata and chat template), the
// security log, and the bias-audit runs. Admin routes never show conversation text.
import { api, errorFrom, headersFor } from "../api.js";
import { clear, field, formatBytes, h, modal } from "../dom.js";
import { formatDateTime, formatNumber, t } from "../i18n.js";
import { ndjsonLines } from "../stream.js";
import { passwordRule } from "./auth.js";

const TABS = ["users", "models", "security", "audit"];

function say(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function table(caption, headers, rows) {
  return h("div", { class: "table-wrap" }, h("table", { class: "data" },
    h("caption", { class: "sr-only", text: caption }),
    h("thead", {}, h("tr", {}, headers.map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, rows)));
}

function usersTab() {
  const out = h("p", { class: "form-status", role: "status" });
  const list = h("div", {});
  async function load() {
    let body;
    try {
      body = await api.get("/api/v1/admin/users");
    } catch (exc) {
      say(out, exc.message, true);
      return;
    }
    clear(list).append(table(t("admin.users"), [t("auth.name"), t("admin.role"), t("admin.state"),
      t("admin.conversations"), t("admin.keys"), t("admin.lastLogin"), ""],
    body.data.map((user) => h("tr", {},
      h("td", { text: user.name }),
      h("td", { text: t(`admin.role.${user.role}`) }),
      h("td", { text: user.disabled ? t("admin.disabled") : t("admin.enabled") }),
      h("td", { text: formatNumber(user.conversation_count ?? 0) }),
      h("td", { text: formatNumber(user.api_key_count ?? 0) }),
      h("td", { text: formatDateTime(user.last_login_at) || "—" }),
      h("td", { class: "row" },
        h("button", { type: "button", class: "ghost small", text: user.role === "admin" ? t("admin.makeUser") : t("admin.makeAdmin"),
          "aria-label": `${user.role === "admin" ? t("admin.makeUser") : t("admin.makeAdmin")}: ${user.name}`,
          onclick: () => change(user, { role: user.role === "admin" ? "user" : "admin" }) }),
        h("button", { type: "button", class: "ghost small", text: user.disabled ? t("admin.enable") : t("admin.disable"),
          "aria-label": `${user.disabled ? t("admin.enable") : t("admin.disable")}: ${user.name}`,
          onclick: () => change(user, { disabled: !user.disabled }) }),
        h("button", { type: "button", class: "danger small", text: t("common.delete"),
          "aria-label": `${t("common.delete")}: ${user.name}`, onclick: () => remove(user) }))))));
  }
  async function change(user, patch) {
    try {
      await api.patch(`/api/v1/admin/users/${user.id}`, patch);
      say(out, t("common.saved"));
      load();
    } catch (exc) {
      say(out, exc.message, true);
    }
  }
  function remove(user) {
    const yes = h("button", { type: "button", class: "danger", text: t("common.delete") });
    const dialog = modal(t("admin.deleteUser"), h("div", { class: "stack" },
      h("p", { text: t("admin.deleteUserConfirm", { name: user.name }) }),
      h("div", { class: "row" }, yes, h("button", { type: "button", class: "ghost", text: t("common.cancel"),
        onclick: () => dialog.close() }))));
    yes.addEventListener("click", async () => {
      dialog.close();
      try {
        await api.del(`/api/v1/admin/users/${user.id}`);
        say(out, t("admin.userDeleted"));
        load();
      } catch (exc) {
        say(out, exc.message, true);
      }
    });
  }
  const name = field(t("auth.name"), h("input", { type: "text", required: true, maxlength: 64 }), t("auth.nameRule"));
  const password = field(t("auth.password"), h("input", { type: "password", autocomplete: "new-password", required: true }), passwordRule());
  const role = field(t("admin.role"), h("select", {}, h("option", { value: "user", text: t("admin.role.user") }),
    h("option", { value: "admin", text: t("admin.role.admin") })));
  const form = h("form", { class: "stack inline-form" }, name.wrap, password.wrap, role.wrap,
    h("button", { type: "submit", class: "primary", text: t("admin.createUser") }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const body = await api.post("/api/v1/admin/users", { name: name.input.value.trim(),
        password: password.input.value, role: role.input.value });
      form.reset();
      const dialog = modal(t("admin.userCreated"), h("div", { class: "stack" },
        h("p", { text: t("admin.recoveryForUser", { name: body.user.name }) }),
        h("p", { class: "secret" }, h("code", { text: body.recovery_code })),
        h("button", { type: "button", class: "primary", text: t("common.done"), onclick: () => dialog.close() })));
      load();
    } catch (exc) {
      say(out, exc.message, true);
    }
  });
  load();
  return h("section", { class: "panel", "aria-label": t("admin.users") },
    h("h2", { text: t("admin.users") }), form, out, list);
}

function modelsTab() {
  const out = h("p", { class: "form-status", role: "status" });
  const list = h("div", {});
  async function load() {
    let body;
    try {
      body = await api.get("/api/tags");
    } catch (exc) {
      say(out, exc.message, true);
      return;
    }
    clear(list).append(body.models.length ? table(t("admin.models"), [t("admin.modelName"), t("admin.parameters"),
      t("admin.quantization"), t("admin.size"), t("admin.modified"), ""],
    body.models.map((model) => h("tr", {},
      h("td", {}, h("code", { text: model.name })),
      h("td", { text: model.details?.parameter_size || "—" }),
      h("td", { text: model.details?.quantization_level || "—" }),
      h("td", { text: formatBytes(model.size) }),
      h("td", { text: formatDateTime(model.modified_at) }),
      h("td", { class: "row" },
        h("button", { type: "button", class: "ghost small", text: t("admin.details"),
          "aria-label": `${t("admin.details")}: ${model.name}`, onclick: () => details(model.name) }),
        h("button", { type: "button", class: "danger small", text: t("admin.remove"),
          "aria-label": `${t("admin.remove")}: ${model.name}`, onclick: () => remove(model.name) })))))
      : h("p", { class: "muted", text: t("chat.noModels") }));
  }
  async function details(name) {
    let show;
    try {
      show = await api.post("/api/show", { model: name });
    } catch (exc) {
      say(out, exc.message, true);
      return;
    }
    const info = Object.entries(show.model_info || {}).filter(([, v]) => typeof v !== "object").slice(0, 60);
    const dialog = modal(name, h("div", { class: "stack" },
      h("p", { text: t("admin.capabilities", { list: (show.capabilities || []).join(", ") }) }),
      h("p", { class: "notice", text: t("admin.templateChecked") }),
      h("h3", { text: t("admin.metadata") }),
      h("dl", { class: "metadata" }, info.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })])),
      h("h3", { text: t("admin.template") }),
      h("pre", { class: "template", tabindex: "0", "aria-label": t("admin.template") }, h("code", { text: show.template || "—" })),
      h("button", { type: "button", class: "primary", text: t("common.close"), onclick: () => dialog.close() })),
    { wide: true });
  }
  function remove(name) {
    const yes = h("button", { type: "button", class: "danger", text: t("admin.remove") });
    const dialog = modal(t("admin.removeModel"), h("div", { class: "stack" },
      h("p", { text: t("admin.removeConfirm", { name }) }),
      h("div", { class: "row" }, yes, h("button", { type: "button", class: "ghost", text: t("common.cancel"),
        onclick: () => dialog.close() }))));
    yes.addEventListener("click", async () => {
      dialog.close();
      try {
        await api.del("/api/delete", { model: name });
        say(out, t("admin.removed", { name }));
        load();
      } catch (exc) {
        say(out, exc.message, true);
      }
    });
  }
  const pullName = field(t("admin.pullName"), h("input", { type: "text", required: true, placeholder: "qwen2.5:0.5b" }),
    t("admin.pullHint"));
  const progress = h("progress", { max: 100, value: 0, hidden: true, "aria-label": t("admin.pullProgress") });
  const pullStatus = h("p", { class: "form-status", role: "status" });
  const cancel = h("button", { type: "button", class: "ghost", hidden: true, text: t("common.cancel") });
  const pullForm = h("form", { class: "stack inline-form" }, pullName.wrap,
    h("button", { type: "submit", class: "primary", text: t("admin.pull") }), cancel, progress, pullStatus);
  pullForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const controller = new AbortController();
    cancel.hidden = false;
    cancel.onclick = () => controller.abort();
    progress.hidden = false;
    progress.removeAttribute("value");
    try {
      const response = await fetch("/api/pull", { method: "POST", credentials: "same-origin", signal: controller.signal,
        headers: headersFor("POST", { "Content-Type": "application/json" }),
        body: JSON.stringify({ model: pullName.input.value.trim(), stream: true }) });
      if (!response.ok) throw await errorFrom(response);
      for await (const line of ndjsonLines(response)) {
        if (line.error) throw new Error(line.error);
        if (line.total) {
          progress.max = line.total;
          progress.value = line.completed || 0;
          say(pullStatus, `${line.status} · ${formatBytes(line.completed || 0)} / ${formatBytes(line.total)}`);
        } else {
          say(pullStatus, line.status);
        }
      }
      say(pullStatus, t("admin.pulled"));
      load();
    } catch (exc) {
      say(pullStatus, exc.name === "AbortError" ? t("admin.pullCancelled") : exc.message, exc.name !== "AbortError");
    } finally {
      cancel.hidden = true;
      progress.hidden = true;
    }
  });
  load();
  return h("section", { class: "panel", "aria-label": t("admin.models") },
    h("h2", { text: t("admin.models") }), pullForm,
    h("p", { class: "muted", text: t("admin.importHint") }), out, list);
}

function securityTab() {
  const out = h("p", { class: "form-status", role: "status" });
  const list = h("div", {});
  const user = field(t("admin.filterUser"), h("input", { type: "text" }));
  const eventName = field(t("admin.filterEvent"), h("input", { type: "text", placeholder: "login_failed" }));
  let before = null;
  const more = h("button", { type: "button", class: "ghost", hidden: true, text: t("admin.older") });
  async function load(append = false) {
    const params = new URLSearchParams({ limit: "100" });
    if (user.input.value.trim()) params.set("user", user.input.value.trim());
    if (eventName.input.value.trim()) params.set("event", eventName.input.value.trim());
    if (append && before !== null) params.set("before_seq", String(before));
    let body;
    try {
      body = await api.get(`/api/v1/admin/security-log?${params}`);
    } catch (exc) {
      say(out, exc.message, true);
      return;
    }
    before = body.next_before_seq;
    more.hidden = before === null;
    const rows = body.data.map((entry) => h("tr", {},
      h("td", { text: String(entry.seq) }), h("td", { text: formatDateTime(entry.at) }),
      h("td", {}, h("code", { text: entry.event })), h("td", { text: entry.user || "—" }),
      h("td", { text: entry.client || "—" }),
      h("td", { class: "details", text: Object.entries(entry.details || {}).map(([k, v]) => `${k}=${v}`).join(", ") })));
    if (append && list.querySelector("tbody")) list.querySelector("tbody").append(...rows);
    else clear(list).append(table(t("admin.security"), ["#", t("admin.when"), t("admin.event"), t("auth.name"),
      t("admin.client"), t("admin.detailsCol")], rows));
  }
  more.addEventListener("click", () => load(true));
  const filter = h("form", { class: "stack inline-form" }, user.wrap, eventName.wrap,
    h("button", { type: "submit", class: "secondary", text: t("admin.filter") }));
  filter.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  const verify = h("button", { type: "button", class: "secondary", text: t("admin.verify"), onclick: async () => {
    try {
      const result = await api.get("/api/v1/admin/security-log/verify");
      say(out, result.ok ? t("admin.verifyOk", { n: result.rows }) : t("admin.verifyBad", { n: result.problems.length }), !result.ok);
    } catch (exc) {
      say(out, exc.message, true);
    }
  } });
  load();
  return h("section", { class: "panel", "aria-label": t("admin.security") },
    h("h2", { text: t("admin.security") }), filter, verify, out, list, more);
}

function auditTab() {
  const out = h("div", {});
  // Audit runs are listed, opened and compared over /api/v1/admin/audit/runs when the server has those
  // routes; this build may not, and then the page says how to reach them from the command line.
  (async () => {
    let body;
    try {
      body = await api.get("/api/v1/admin/audit/runs");
    } catch (exc) {
      out.append(h("p", { class: "notice", text: exc.status === 404 ? t("admin.auditMissing") : exc.message }));
      return;
    }
    const picks = new Set();
    const compare = h("button", { type: "button", class: "secondary", disabled: true, text: t("admin.compare") });
    compare.addEventListener("click", () => {
      const [a, b] = [...picks];
      window.open(`/api/v1/admin/audit/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`, "_blank", "noopener");
    });
    out.append(compare, table(t("admin.audit"), ["", t("admin.run"), t("admin.modelName"), t("admin.when"), ""],
      (body.data || []).map((run) => {
        const box = h("input", { type: "checkbox", "aria-label": t("admin.pickRun", { id: run.id }) });
        box.addEventListener("change", () => {
          if (box.checked) picks.add(run.id);
          else picks.delete(run.id);
          compare.disabled = picks.size !== 2;
        });
        return h("tr", {}, h("td", {}, box), h("td", {}, h("code", { text: String(run.id) })),
          h("td", { text: run.model || "—" }), h("td", { text: formatDateTime(run.started_at || run.created_at) }),
          h("td", {}, h("a", { href: `/api/v1/admin/audit/runs/${encodeURIComponent(run.id)}/report.html`,
            target: "_blank", rel: "noopener", text: t("admin.openReport") })));
      })));
  })();
  return h("section", { class: "panel", "aria-label": t("admin.audit") }, h("h2", { text: t("admin.audit") }), out);
}

export function renderAdmin(tab) {
  if (!TABS.includes(tab)) tab = "users";
  const nav = h("nav", { class: "tabs", "aria-label": t("nav.admin") }, TABS.map((name) => h("a", {
    href: `#/admin/${name}`, class: name === tab ? "tab active" : "tab", "aria-current": name === tab ? "page" : null,
    text: t(`admin.${name}`) })));
  const content = { users: usersTab, models: modelsTab, security: securityTab, audit: auditTab }[tab]();
  return h("main", { class: "page", id: "main" }, h("h1", { text: t("admin.title") }), nav, content);
}
