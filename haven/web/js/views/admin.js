// Administration: users, models (pull with live progress, import from a server path, remove, metadata and
// chat template), the security log, and the bias-audit runs (a run's report in a sandboxed frame, two runs
// compared). Admin routes never show conversation text.
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
  const importPath = field(t("admin.importPath"), h("input", { type: "text", required: true, spellcheck: "false",
    autocomplete: "off", placeholder: "/srv/models/model.gguf" }), t("admin.importHint"));
  const importName = field(t("admin.importName"), h("input", { type: "text", maxlength: 300, spellcheck: "false",
    autocomplete: "off", placeholder: "my-model:q4" }), t("admin.importNameHint"));
  const importButton = h("button", { type: "submit", class: "primary", text: t("admin.import") });
  const importStatus = h("p", { class: "form-status", role: "status", "data-testid": "import-status" });
  const importForm = h("form", { class: "stack inline-form", "aria-labelledby": "import-title" },
    importPath.wrap, importName.wrap, importButton, importStatus);
  importForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    importButton.disabled = true;
    importForm.setAttribute("aria-busy", "true");
    say(importStatus, t("admin.importing"));
    try {
      const name = importName.input.value.trim();
      const body = await api.post("/api/v1/admin/models/import", { path: importPath.input.value.trim(),
        name: name || null });
      importForm.reset();
      say(importStatus, t("admin.imported", { name: body.model }) + (body.template_warning ? ` ${body.template_warning}` : ""));
      load();
    } catch (exc) {
      say(importStatus, exc.code === "model_import_disabled" ? t("admin.importDisabled") : exc.message, true);
    } finally {
      importButton.disabled = false;
      importForm.removeAttribute("aria-busy");
    }
  });
  load();
  return h("section", { class: "panel", "aria-label": t("admin.models") },
    h("h2", { text: t("admin.models") }), pullForm,
    h("h3", { id: "import-title", text: t("admin.importTitle") }), importForm, out, list);
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

function percent(rate) {
  return rate === null || rate === undefined ? "—" : `${formatNumber(Math.round(rate * 1000) / 10)} %`;
}

function runLabel(run) {
  return `#${run.id} · ${run.model || run.target || "—"}`;
}

/** One run's HTML report in a sandboxed frame: the server's own CSP for it forbids all but its filter script. */
function openReport(run) {
  const src = `/api/v1/admin/audit/runs/${encodeURIComponent(run.id)}/report.html`;
  const title = t("admin.reportOf", { id: run.id });
  const dialog = modal(title, h("div", { class: "stack" },
    h("iframe", { class: "report-frame", src, title, sandbox: "allow-scripts", referrerpolicy: "no-referrer" }),
    h("div", { class: "row" },
      h("a", { class: "button secondary", href: src, target: "_blank", rel: "noopener noreferrer", text: t("admin.openNewTab") }),
      h("button", { type: "button", class: "primary", text: t("common.close"), onclick: () => dialog.close() }))),
  { wide: true });
}

function comparison(result) {
  const [a, b] = [result.a.run, result.b.run];
  const rows = [];
  for (const group of result.groups) {
    for (const measure of ["broad", "strict"]) {
      const cell = group[measure];
      rows.push(h("tr", { class: cell.flagged ? "flagged" : null },
        h("td", { text: group.group }),
        h("td", { text: measure === "broad" ? t("admin.measureBroad") : t("admin.measureStrict") }),
        h("td", { class: "num", text: percent(cell.rate_a) }), h("td", { class: "num", text: percent(cell.rate_b) }),
        h("td", { class: "num", text: `${cell.difference > 0 ? "+" : ""}${percent(cell.difference)}` }),
        h("td", { class: "num", text: formatNumber(Math.round(cell.p_adjusted * 10000) / 10000) }),
        h("td", { text: cell.flagged ? t("admin.significantYes") : t("admin.significantNo") })));
    }
  }
  return h("section", { class: "stack", "aria-labelledby": "audit-comparison", "data-testid": "audit-comparison" },
    h("h3", { id: "audit-comparison", tabindex: "-1", text: t("admin.comparison", { a: runLabel(a), b: runLabel(b) }) }),
    h("p", { text: result.summary }),
    table(t("admin.comparison", { a: runLabel(a), b: runLabel(b) }), [t("admin.group"), t("admin.measure"),
      t("admin.rateOf", { run: `#${a.id}` }), t("admin.rateOf", { run: `#${b.id}` }), t("admin.difference"),
      t("admin.pAdjusted"), t("admin.significant")], rows),
    result.groups_in_one_run_only.length
      ? h("p", { class: "muted", text: t("admin.onlyIn", { list: result.groups_in_one_run_only.join(", ") }) }) : null);
}

function auditTab() {
  // The runs stored by `haven audit run`: open one's report, or pick two and compare them.
  const out = h("p", { class: "form-status", role: "status" });
  const list = h("div", {});
  const result = h("div", {});
  const picks = new Set();
  const compare = h("button", { type: "button", class: "secondary", disabled: true, text: t("admin.compare"),
    "aria-describedby": "compare-hint" });
  const hint = h("p", { class: "hint", id: "compare-hint", text: t("admin.compareHint") });
  compare.addEventListener("click", async () => {
    const [a, b] = [...picks].sort((x, y) => x - y);  // older run first: "what changed since"
    clear(result);
    say(out, t("admin.comparing"));
    try {
      const body = await api.get(`/api/v1/admin/audit/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
      say(out, "");
      result.append(comparison(body));
      // Focus the result's heading: a screen reader reads where it landed, the keyboard continues from there.
      result.querySelector("h3").focus();
    } catch (exc) {
      say(out, exc.message, true);
    }
  });
  (async () => {
    let body;
    try {
      body = await api.get("/api/v1/admin/audit/runs");
    } catch (exc) {
      say(out, exc.message, true);
      return;
    }
    if (!body.data.length) {
      list.append(h("p", { class: "muted", text: t("admin.auditNone") }));
      return;
    }
    list.append(table(t("admin.audit"), ["", t("admin.run"), t("admin.modelName"), t("admin.suite"),
      t("admin.languages"), t("admin.state"), t("admin.answers"), t("admin.when"), ""],
    body.data.map((run) => {
      const box = h("input", { type: "checkbox", "aria-label": t("admin.pickRun", { id: run.id }) });
      box.addEventListener("change", () => {
        if (box.checked) picks.add(run.id);
        else picks.delete(run.id);
        compare.disabled = picks.size !== 2;
      });
      return h("tr", {}, h("td", {}, box), h("td", {}, h("code", { text: String(run.id) })),
        h("td", { text: run.model || run.target || "—" }), h("td", { text: run.suite }),
        h("td", { text: (run.languages || []).join(", ") }), h("td", { text: run.status }),
        h("td", { class: "num", text: `${formatNumber(run.responses)} / ${formatNumber(run.item_count)}` }),
        h("td", { text: formatDateTime(run.created_at) }),
        h("td", {}, h("button", { type: "button", class: "ghost small", text: t("admin.openReport"),
          "aria-label": `${t("admin.openReport")}: #${run.id}`, onclick: () => openReport(run) })));
    })));
  })();
  return h("section", { class: "panel", "aria-label": t("admin.audit") }, h("h2", { text: t("admin.audit") }),
    h("div", { class: "row" }, compare), hint, out, list, result);
}

export function renderAdmin(tab) {
  if (!TABS.includes(tab)) tab = "users";
  const nav = h("nav", { class: "tabs", "aria-label": t("nav.admin") }, TABS.map((name) => h("a", {
    href: `#/admin/${name}`, class: name === tab ? "tab active" : "tab", "aria-current": name === tab ? "page" : null,
    text: t(`admin.${name}`) })));
  const content = { users: usersTab, models: modelsTab, security: securityTab, audit: auditTab }[tab]();
  return h("main", { class: "page", id: "main" }, h("h1", { text: t("admin.title") }), nav, content);
}
