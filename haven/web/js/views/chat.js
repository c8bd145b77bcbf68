// The chat screen: the conversation sidebar, the model picker, the message thread with its branches,
// and the composer. Every answer streams from /v1/chat/completions with the conversation_id extension,
// so the server stores the turn; after each stream (finished, stopped or failed) the conversation is
// read back from the server, which keeps the screen equal to what is stored.
import { ApiError, api, errorFrom, headersFor } from "../api.js";
import { announce, clear, copyText, field, formatBytes, h, modal, uid } from "../dom.js";
import { formatNumber, t } from "../i18n.js";
import { renderMarkdown } from "../markdown.js";
import { sseEvents } from "../stream.js";
import { navigate } from "../app.js";

const PARAMS_KEY = "haven.params";
const MODEL_KEY = "haven.model";
const THINK_KEY = "haven.thinkingSeconds";
const DEFAULT_PARAMS = { temperature: "", top_p: "", max_tokens: "", seed: "" };

function draftKey(id) {
  return `haven.draft.${id || "new"}`;
}

function loadParams() {
  try {
    return { ...DEFAULT_PARAMS, ...JSON.parse(localStorage.getItem(PARAMS_KEY) || "{}") };
  } catch {
    return { ...DEFAULT_PARAMS };
  }
}

function thinkingSeconds() {
  try {
    return JSON.parse(sessionStorage.getItem(THINK_KEY) || "{}");
  } catch {
    return {};
  }
}

function rememberThinking(messageId, seconds) {
  const all = thinkingSeconds();
  all[messageId] = seconds;
  sessionStorage.setItem(THINK_KEY, JSON.stringify(all));
}

/** Conversations grouped by how long ago they were last updated. */
export function groupByDate(conversations, now = new Date()) {
  const startOfDay = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const day = 86400000;
  const groups = [["today", []], ["yesterday", []], ["week", []], ["month", []], ["older", []]];
  for (const conversation of conversations) {
    const at = new Date(conversation.updated_at).getTime();
    let index = 4;
    if (at >= startOfDay) index = 0;
    else if (at >= startOfDay - day) index = 1;
    else if (at >= startOfDay - 7 * day) index = 2;
    else if (at >= startOfDay - 30 * day) index = 3;
    groups[index][1].push(conversation);
  }
  return groups.filter(([, items]) => items.length);
}

/** The active thread: from the current leaf up to the root, root first. */
export function activeThread(conversation) {
  if (!conversation || !conversation.current_leaf_id) return [];
  const byId = new Map(conversation.messages.map((m) => [m.id, m]));
  const thread = [];
  let node = byId.get(conversation.current_leaf_id);
  while (node) {
    thread.unshift(node);
    node = node.parent_id ? byId.get(node.parent_id) : null;
  }
  return thread;
}

function siblingsOf(conversation, message) {
  return conversation.messages
    .filter((m) => m.parent_id === message.parent_id && m.role === message.role)
    .sort((a, b) => a.created_at.localeCompare(b.created_at));
}

function deepestLeaf(conversation, message) {
  const byId = new Map(conversation.messages.map((m) => [m.id, m]));
  let node = message;
  for (;;) {
    const children = (node.children || []).map((id) => byId.get(id)).filter(Boolean);
    if (!children.length) return node;
    children.sort((a, b) => a.created_at.localeCompare(b.created_at));
    node = children[children.length - 1];
  }
}

function describeError(exc) {
  if (exc instanceof ApiError) {
    if (exc.status === 429) return t("error.busy", { s: exc.retryAfter || 5 });
    if (exc.code === "model_load_failed" || exc.code === "memory_budget_exceeded") {
      return t("error.modelLoad", { detail: exc.message });
    }
    if (exc.code === "model_not_found") return t("error.modelMissing", { detail: exc.message });
    if (exc.status === 0) return t("error.network");
    return exc.message;
  }
  return t("error.generic", { detail: exc.message || String(exc) });
}

export function renderChat(conversationId) {
  let conversation = null;
  let models = [];
  let streaming = null; // {controller, article}
  let searchTimer = null;
  let disposed = false;

  const announcer = (text) => announce(text);

  // --- sidebar ------------------------------------------------------------------------------------
  const search = h("input", { type: "search", class: "search", placeholder: t("chat.search"),
    "aria-label": t("chat.search") });
  const list = h("nav", { class: "conversation-list", "aria-label": t("chat.conversations") });
  const sidebar = h("aside", { class: "sidebar", id: uid("sidebar"), "aria-label": t("chat.conversations") },
    h("button", { type: "button", class: "primary new-chat", onclick: () => newChat(), text: t("chat.new") }),
    search, list);
  const sidebarToggle = h("button", { type: "button", class: "ghost sidebar-toggle", "aria-controls": sidebar.id,
    "aria-expanded": "false", "aria-label": t("chat.toggleSidebar"), text: "☰" });
  sidebarToggle.addEventListener("click", () => {
    const open = sidebar.classList.toggle("open");
    sidebarToggle.setAttribute("aria-expanded", String(open));
    if (open) search.focus();
  });
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadList, 250);
  });

  async function loadList() {
    let body;
    try {
      const q = search.value.trim();
      body = await api.get(`/api/v1/conversations?limit=200${q ? `&q=${encodeURIComponent(q)}` : ""}`);
    } catch (exc) {
      clear(list).append(h("p", { class: "error", text: describeError(exc) }));
      return;
    }
    clear(list);
    if (!body.data.length) {
      list.append(h("p", { class: "muted", text: search.value ? t("chat.noMatches") : t("chat.empty") }));
      return;
    }
    for (const [group, items] of groupByDate(body.data)) {
      const headingId = uid("group");
      list.append(h("h2", { class: "group", id: headingId, text: t(`chat.group.${group}`) }),
        h("ul", { "aria-labelledby": headingId }, items.map((c) => h("li", {},
          h("a", { href: `#/c/${c.id}`, class: c.id === conversationId ? "conversation active" : "conversation",
            "aria-current": c.id === conversationId ? "page" : null, title: c.title, dir: "auto", text: c.title })))));
    }
  }

  // --- toolbar: title, model picker, parameters, conversation actions -----------------------------
  const title = h("h1", { class: "chat-title", dir: "auto", text: t("chat.new") });
  const modelSelect = h("select", { class: "model-picker", "aria-label": t("chat.model") });
  const modelInfo = h("span", { class: "model-info muted", "aria-live": "polite" });
  modelSelect.addEventListener("change", async () => {
    localStorage.setItem(MODEL_KEY, modelSelect.value);
    describeModel();
    if (conversation) {
      conversation = await api.patch(`/api/v1/conversations/${conversation.id}`, { model: modelSelect.value })
        .catch(() => conversation);
    }
  });
  const actions = h("div", { class: "conversation-actions" },
    h("button", { type: "button", class: "ghost", onclick: () => openParameters(), text: t("chat.parameters") }),
    h("button", { type: "button", class: "ghost needs-conversation", onclick: () => rename(), text: t("chat.rename") }),
    h("button", { type: "button", class: "ghost needs-conversation", onclick: () => exportDialog(), text: t("chat.export") }),
    h("button", { type: "button", class: "ghost danger needs-conversation", onclick: () => remove(), text: t("chat.delete") }));
  const toolbar = h("div", { class: "chat-toolbar" }, sidebarToggle, title,
    h("div", { class: "model-box" }, modelSelect, modelInfo), actions);

  // --- messages and composer ----------------------------------------------------------------------
  const thread = h("div", { class: "messages", role: "region", "aria-label": t("chat.messages"), tabindex: "-1" });
  const input = h("textarea", { class: "composer-input", rows: 1, placeholder: t("chat.placeholder"),
    "aria-label": t("chat.message"), "data-autofocus": true });
  input.value = sessionStorage.getItem(draftKey(conversationId)) || "";
  const sendButton = h("button", { type: "submit", class: "primary send", text: t("chat.send") });
  const stopButton = h("button", { type: "button", class: "danger stop", hidden: true, text: t("chat.stop"),
    onclick: () => stop() });
  const composerStatus = h("p", { class: "composer-status muted", role: "status" });
  const composer = h("form", { class: "composer" },
    h("div", { class: "composer-row" }, input, sendButton, stopButton), composerStatus);
  const resize = () => {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
  };
  input.addEventListener("input", () => {
    sessionStorage.setItem(draftKey(conversationId), input.value);
    resize();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim() || streaming) return;
    send(text);
  });

  const main = h("main", { class: "chat-main", id: "main" }, toolbar, thread, composer);
  const element = h("div", { class: "chat-layout" }, sidebar, main);
  document.addEventListener("keydown", onShortcut);

  function onShortcut(event) {
    // Escape in a dialog closes the dialog; it does not also stop the answer streaming behind it.
    if (event.key === "Escape" && streaming && !document.querySelector("dialog[open]")) stop();
    if (event.key === "Escape" && sidebar.classList.contains("open")) {
      sidebar.classList.remove("open");
      sidebarToggle.setAttribute("aria-expanded", "false");
      sidebarToggle.focus();
    }
  }

  function setBusy(busy) {
    sendButton.hidden = busy;
    stopButton.hidden = !busy;
    for (const button of thread.querySelectorAll(".msg-actions button")) button.disabled = busy;
  }

  function updateChrome() {
    title.textContent = conversation ? conversation.title : t("chat.new");
    document.title = conversation ? `${conversation.title} · Haven` : "Haven";
    for (const button of actions.querySelectorAll(".needs-conversation")) button.hidden = !conversation;
  }

  // --- models ---------------------------------------------------------------------------------------
  async function loadModels() {
    try {
      const tags = await api.get("/api/tags");
      models = tags.models.map((m) => ({ name: m.name, size: m.size, parameters: m.details?.parameter_size,
        quantization: m.details?.quantization_level, context: null }));
    } catch {
      try {
        const list = await api.get("/v1/models");
        models = list.data.map((m) => ({ name: m.id }));
      } catch (exc) {
        modelInfo.textContent = describeError(exc);
        return;
      }
    }
    clear(modelSelect);
    if (!models.length) {
      modelSelect.append(h("option", { value: "", text: t("chat.noModels") }));
      return;
    }
    const wanted = (conversation && conversation.model) || localStorage.getItem(MODEL_KEY);
    if (disposed) return;
    for (const model of models) {
      modelSelect.append(h("option", { value: model.name, selected: model.name === wanted, text: model.name }));
    }
    describeModel();
    // The context length lives in each model's metadata (/api/show); fetched after the list shows.
    await Promise.all(models.map(async (model) => {
      try {
        const show = await api.post("/api/show", { model: model.name });
        const key = Object.keys(show.model_info || {}).find((k) => k.endsWith(".context_length"));
        model.context = key ? show.model_info[key] : null;
        model.thinking = (show.capabilities || []).includes("thinking");
      } catch {
        model.context = null;
      }
    }));
    if (!disposed) describeModel();
  }

  function describeModel() {
    const model = models.find((m) => m.name === modelSelect.value);
    if (!model) return;
    const parts = [model.parameters, model.quantization, model.size ? formatBytes(model.size) : null,
      model.context ? t("chat.context", { n: formatNumber(model.context) }) : null].filter(Boolean);
    modelInfo.textContent = parts.join(" · ");
    for (const option of modelSelect.options) {
      const m = models.find((x) => x.name === option.value);
      if (m) option.textContent = [m.name, m.parameters, m.quantization].filter(Boolean).join(" · ");
    }
  }

  // --- rendering ------------------------------------------------------------------------------------
  function renderBody(container, text) {
    container.replaceChildren(renderMarkdown(text, { copyLabel: t("common.copy"), onCopy: async (code, button) => {
      if (await copyText(code)) {
        button.textContent = t("common.copied");
        setTimeout(() => { button.textContent = t("common.copy"); }, 1500);
      }
    } }));
  }

  function thinkingPanel(reasoning, seconds, live = false) {
    const label = h("span", { class: "thinking-label", text: live ? t("chat.thinkingLive") : seconds
      ? t("chat.thoughtFor", { s: formatNumber(seconds, { maximumFractionDigits: 1 }) }) : t("chat.thinking") });
    const body = h("div", { class: "thinking-body markdown", dir: "auto" });
    renderBody(body, reasoning || "");
    const details = h("details", { class: "thinking", open: live }, h("summary", {}, label), body);
    return { details, label, body };
  }

  function metaLine(message) {
    const parts = [];
    if (message.usage) parts.push(t("chat.tokens", { n: formatNumber(message.usage.completion_tokens) }));
    const tps = message.timings && message.timings.tokens_per_second;
    if (tps) parts.push(t("chat.tokensPerSecond", { n: formatNumber(tps, { maximumFractionDigits: 1 }) }));
    if (message.usage) parts.push(t("chat.promptTokens", { n: formatNumber(message.usage.prompt_tokens) }));
    if (message.model) parts.push(message.model);
    if (message.incomplete || message.finish_reason === "cancelled") parts.push(t("chat.stopped"));
    else if (message.finish_reason === "length") parts.push(t("chat.truncated"));
    return h("p", { class: "msg-meta muted", text: parts.join(" · ") });
  }

  function branchSwitcher(message) {
    const siblings = siblingsOf(conversation, message);
    if (siblings.length < 2) return null;
    const index = siblings.findIndex((m) => m.id === message.id);
    const go = (delta) => switchBranch(siblings[index + delta]);
    return h("span", { class: "branches", role: "group", "aria-label": t("chat.versions") },
      h("button", { type: "button", class: "icon", disabled: index === 0, "aria-label": t("chat.previousVersion"),
        onclick: () => go(-1), text: "‹" }),
      h("span", { class: "branch-count", text: t("chat.versionOf", { i: index + 1, n: siblings.length }) }),
      h("button", { type: "button", class: "icon", disabled: index === siblings.length - 1,
        "aria-label": t("chat.nextVersion"), onclick: () => go(1), text: "›" }));
  }

  function messageArticle(message) {
    const isUser = message.role === "user";
    // dir=auto: each message takes the direction of its own text (English in an Arabic UI stays LTR).
    const body = h("div", { class: "msg-body markdown", dir: "auto" });
    renderBody(body, message.content || "");
    const article = h("article", { class: `msg ${message.role}`, dataset: { id: message.id },
      "aria-label": isUser ? t("chat.you") : t("chat.assistant") });
    article.append(h("p", { class: "msg-role", text: isUser ? t("chat.you") : t("chat.assistant") }));
    if (!isUser && message.reasoning) {
      article.append(thinkingPanel(message.reasoning, thinkingSeconds()[message.id]).details);
    }
    article.append(body);
    if (!isUser) article.append(metaLine(message));
    const tools = h("div", { class: "msg-actions" }, branchSwitcher(message),
      h("button", { type: "button", class: "ghost small copy", text: t("common.copy"), onclick: async (event) => {
        if (await copyText(message.content || "")) {
          event.target.textContent = t("common.copied");
          announcer(t("common.copied"));
        }
      } }),
      isUser
        ? h("button", { type: "button", class: "ghost small edit", text: t("chat.edit"), onclick: () => edit(message, article) })
        : h("button", { type: "button", class: "ghost small regenerate", text: t("chat.regenerate"),
          onclick: () => regenerate(message) }));
    article.append(tools);
    return article;
  }

  function renderThread() {
    clear(thread);
    const messages = activeThread(conversation).filter((m) => m.role === "user" || m.role === "assistant");
    if (!messages.length) {
      thread.append(h("div", { class: "empty-chat" }, h("p", { class: "hello", text: t("chat.hello") }),
        h("p", { class: "muted", text: t("chat.privacy") })));
    }
    for (const message of messages) thread.append(messageArticle(message));
    thread.scrollTop = thread.scrollHeight;
  }

  async function loadConversation(id) {
    try {
      conversation = await api.get(`/api/v1/conversations/${id}`);
    } catch (exc) {
      if (exc.status === 404) {
        navigate("#/");
        return;
      }
      clear(thread).append(h("p", { class: "error", role: "alert", text: describeError(exc) }));
      return;
    }
    if (conversation.model && [...modelSelect.options].some((o) => o.value === conversation.model)) {
      modelSelect.value = conversation.model;
      describeModel();
    }
    updateChrome();
    renderThread();
  }

  // --- generation -----------------------------------------------------------------------------------
  function requestMessages(history) {
    const messages = [];
    if (conversation && conversation.system) messages.push({ role: "system", content: conversation.system });
    for (const m of history) {
      // An answer that was stopped before its first token (or ended at once) has nothing to send back,
      // and the chat APIs refuse an empty assistant message.
      if (m.role === "assistant" && !m.content) continue;
      messages.push({ role: m.role, content: m.content || "" });
    }
    return messages;
  }

  function samplingParams() {
    const params = loadParams();
    const out = {};
    for (const [key, value] of Object.entries(params)) {
      if (value === "" || value === null) continue;
      out[key] = key === "max_tokens" || key === "seed" ? parseInt(value, 10) : parseFloat(value);
    }
    return out;
  }

  /** Sends, streams and stores one answer (see streamAnswer). The thread is busy from the first step (a new
   * conversation is created before the stream starts) until the stored answer has been re-read and drawn. */
  async function generate(history, options = {}) {
    thread.setAttribute("aria-busy", "true");
    try {
      await streamAnswer(history, options);
    } finally {
      thread.setAttribute("aria-busy", "false");
    }
  }

  /** Streams one answer. `history` ends with the user message to answer; `parentId` is where it hangs. */
  async function streamAnswer(history, { parentId = null, pendingUser = null, restoreText = null } = {}) {
    const model = modelSelect.value;
    if (!model) {
      composerStatus.textContent = t("chat.noModels");
      return;
    }
    if (!conversation) {
      const firstLine = (pendingUser || "").split("\n")[0].trim().slice(0, 80) || t("chat.new");
      try {
        conversation = await api.post("/api/v1/conversations", { title: firstLine, model });
      } catch (exc) {
        composerStatus.textContent = describeError(exc);
        if (restoreText !== null) input.value = restoreText;
        return;
      }
      sessionStorage.removeItem(draftKey(null));
      conversationId = conversation.id;
      history = history.slice();
      // Keeps the hash in step without re-rendering the view.
      window.history.replaceState(null, "", `#/c/${conversation.id}`);
      updateChrome();
      loadList();
    }
    if (pendingUser !== null) {
      const userArticle = messageArticle({ id: "pending", role: "user", content: pendingUser });
      userArticle.querySelector(".msg-actions").remove();
      thread.querySelector(".empty-chat")?.remove();
      thread.append(userArticle);
    }
    const body = h("div", { class: "msg-body markdown", dir: "auto", "aria-live": "polite", "aria-busy": "true" });
    const meta = h("p", { class: "msg-meta muted", text: t("chat.waiting") });
    const article = h("article", { class: "msg assistant streaming", "aria-label": t("chat.assistant") },
      h("p", { class: "msg-role", text: t("chat.assistant") }), body, meta);
    thread.append(article);
    thread.scrollTop = thread.scrollHeight;

    const controller = new AbortController();
    streaming = { controller, article };
    setBusy(true);
    composerStatus.textContent = "";
    announcer(t("chat.generating"));

    const payload = { model, messages: requestMessages(history), stream: true,
      stream_options: { include_usage: true }, conversation_id: conversation.id, ...samplingParams() };
    if (parentId) payload.parent_message_id = parentId;

    let content = "";
    let reasoning = "";
    let thinking = null;
    let thinkStart = null;
    let thinkSeconds = null;
    let usage = null;
    let firstToken = null;
    let messageId = null;
    let failure = null;
    let stopped = false;
    let frame = 0;
    const started = performance.now();
    const timer = setInterval(() => {
      if (thinking && thinkSeconds === null && thinkStart !== null) {
        thinking.label.textContent = t("chat.thinkingFor", {
          s: formatNumber((performance.now() - thinkStart) / 1000, { maximumFractionDigits: 1 }) });
      }
    }, 100);
    const paint = () => {
      frame = 0;
      if (thinking) renderBody(thinking.body, reasoning);
      renderBody(body, content);
      const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
      if (atBottom) thread.scrollTop = thread.scrollHeight;
    };
    const schedule = () => { if (!frame) frame = requestAnimationFrame(paint); };

    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST", credentials: "same-origin", signal: controller.signal,
        headers: headersFor("POST", { "Content-Type": "application/json", Accept: "text/event-stream" }),
        body: JSON.stringify(payload),
      });
      if (!response.ok) {
        const error = await errorFrom(response);
        if (response.status === 401) {
          // Session expired: keep the text for after the login.
          if (restoreText !== null) sessionStorage.setItem(draftKey(conversation.id), restoreText);
          window.dispatchEvent(new CustomEvent("haven:signed-out"));
        }
        throw error;
      }
      if (restoreText !== null) {
        input.value = "";
        resize();
        sessionStorage.removeItem(draftKey(conversation.id));
      }
      messageId = response.headers.get("X-Haven-Message-Id");
      meta.textContent = "";
      for await (const chunk of sseEvents(response)) {
        if (chunk.error) {
          const e = chunk.error;
          throw new ApiError(500, e.message || String(e), { code: e.code || null });
        }
        if (chunk.message_id) messageId = chunk.message_id;
        if (chunk.usage) usage = chunk.usage;
        const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
        if (delta.reasoning_content) {
          if (!thinking) {
            thinkStart = performance.now();
            thinking = thinkingPanel("", null, true);
            article.insertBefore(thinking.details, body);
          }
          reasoning += delta.reasoning_content;
          schedule();
        }
        if (delta.content) {
          if (firstToken === null) firstToken = performance.now();
          if (thinking && thinkSeconds === null) {
            thinkSeconds = (performance.now() - thinkStart) / 1000;
            thinking.label.textContent = t("chat.thoughtFor", { s: formatNumber(thinkSeconds, { maximumFractionDigits: 1 }) });
            thinking.details.open = false;
          }
          content += delta.content;
          schedule();
        }
      }
    } catch (exc) {
      if (exc.name === "AbortError") stopped = true;
      else failure = exc;
    } finally {
      clearInterval(timer);
      if (frame) cancelAnimationFrame(frame);
    }
    paint();
    if (thinking && thinkSeconds === null && thinkStart !== null) thinkSeconds = (performance.now() - thinkStart) / 1000;
    if (messageId && thinkSeconds !== null) rememberThinking(messageId, Math.round(thinkSeconds * 10) / 10);
    body.setAttribute("aria-busy", "false");
    streaming = null;
    setBusy(false);

    if (failure) {
      // The error stays where the answer would have been; the stored conversation is re-read underneath.
      await reload({ expectAnswer: false });
      const message = describeError(failure);
      const retry = h("button", { type: "button", class: "secondary small", text: t("common.retry"),
        onclick: () => { errorBox.remove(); generate(history, { parentId, restoreText: null }); } });
      const errorBox = h("div", { class: "msg assistant failed", role: "alert" },
        h("p", { class: "msg-role", text: t("chat.assistant") }),
        h("p", { class: "error", text: message }), retry);
      if (failure.status === 401) retry.remove();
      thread.append(errorBox);
      thread.scrollTop = thread.scrollHeight;
      if (restoreText !== null && failure.status !== 401) {
        input.value = restoreText;
        resize();
      }
      return;
    }
    const elapsed = (performance.now() - (firstToken || started)) / 1000;
    announcer(stopped ? t("chat.stopped") : t("chat.done"));
    if (usage && !stopped) {
      meta.textContent = [t("chat.tokens", { n: usage.completion_tokens }),
        t("chat.tokensPerSecond", { n: formatNumber(usage.completion_tokens / Math.max(elapsed, 0.001),
          { maximumFractionDigits: 1 }) })].join(" · ");
    }
    await reload({ expectAnswer: true });
    // Back to the composer for the next message, unless the user has put focus somewhere else meanwhile
    // (a dialog, the sidebar): the re-read can take a few seconds and must not pull focus away from them.
    const here = document.activeElement;
    const adrift = !here || here === document.body || here === input || thread.contains(here);
    if (adrift && !disposed && !document.querySelector("dialog[open]")) input.focus();
  }

  /** Re-reads the conversation; after a stop the server may need a moment to store the partial answer. */
  async function reload({ expectAnswer }) {
    if (!conversation) return;
    for (let attempt = 0; attempt < 15; attempt += 1) {
      try {
        conversation = await api.get(`/api/v1/conversations/${conversation.id}`);
      } catch {
        return;
      }
      const leaf = conversation.messages.find((m) => m.id === conversation.current_leaf_id);
      // The reply is stored as a placeholder when generation starts and completed just after the stream
      // ends (or the client goes away): wait for its final record.
      const settled = leaf && leaf.role === "assistant" && (leaf.finish_reason || !leaf.incomplete);
      if (!expectAnswer || settled) break;
      await new Promise((resolve) => { setTimeout(resolve, 200); });
    }
    if (disposed) return;
    updateChrome();
    renderThread();
    loadList();
  }

  function send(text) {
    const history = [...activeThread(conversation).filter((m) => m.role !== "system"), { role: "user", content: text }];
    return generate(history, { pendingUser: text, restoreText: text });
  }

  function stop() {
    if (!streaming) return;
    streaming.controller.abort();
  }

  function historyBefore(message) {
    const messages = activeThread(conversation);
    return messages.slice(0, messages.findIndex((m) => m.id === message.id)).filter((m) => m.role !== "system");
  }

  function regenerate(message) {
    // The answer's parent is the user message it answered: a new sibling answer hangs there.
    const history = historyBefore(message);
    renderThreadUpTo(message);
    return generate(history, { parentId: message.parent_id });
  }

  function renderThreadUpTo(message) {
    const article = thread.querySelector(`[data-id="${CSS.escape(message.id)}"]`);
    if (!article) return;
    while (article.nextSibling) article.nextSibling.remove();
    article.remove();
  }

  function edit(message, article) {
    const area = h("textarea", { class: "edit-input", "aria-label": t("chat.editMessage"), rows: 3 });
    area.value = message.content || "";
    const save = h("button", { type: "button", class: "primary small", text: t("chat.saveAndSend") });
    const cancel = h("button", { type: "button", class: "ghost small", text: t("common.cancel"),
      onclick: () => renderThread() });
    const editor = h("div", { class: "editor" }, area, h("div", { class: "row" }, save, cancel));
    article.replaceChildren(h("p", { class: "msg-role", text: t("chat.you") }), editor);
    area.focus();
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        renderThread();
      }
    });
    save.addEventListener("click", () => {
      const text = area.value;
      if (!text.trim()) return;
      const history = [...historyBefore(message), { role: "user", content: text }];
      renderThreadUpTo(message);
      if (message.parent_id) {
        generate(history, { parentId: message.parent_id, pendingUser: text });
        return;
      }
      // The first message has no parent to hang a new branch under on /v1/chat/completions: store the
      // edited text as a new root first, then answer it (the server reuses that user message).
      setBusy(true);
      api.post(`/api/v1/conversations/${conversation.id}/messages`, { role: "user", content: text, parent_id: null })
        .finally(() => setBusy(false))
        .then((root) => generate(history, { parentId: root.id, pendingUser: text }))
        .catch((exc) => {
          composerStatus.textContent = describeError(exc);
          renderThread();
        });
    });
  }

  async function switchBranch(message) {
    const leaf = deepestLeaf(conversation, message);
    try {
      conversation = await api.patch(`/api/v1/conversations/${conversation.id}`, { current_leaf_id: leaf.id });
    } catch (exc) {
      composerStatus.textContent = describeError(exc);
      return;
    }
    renderThread();
    const article = thread.querySelector(`[data-id="${CSS.escape(message.id)}"] .branches button:not([disabled])`);
    if (article) article.focus();
    announcer(t("chat.versionOf", { i: siblingsOf(conversation, message).findIndex((m) => m.id === message.id) + 1,
      n: siblingsOf(conversation, message).length }));
  }

  // --- conversation actions -----------------------------------------------------------------------
  function newChat() {
    if (conversationId) navigate("#/");
    else {
      conversation = null;
      updateChrome();
      renderThread();
      input.focus();
    }
  }

  function rename() {
    const name = field(t("chat.title"), h("input", { type: "text", maxlength: 300, required: true,
      value: conversation.title }));
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const form = h("form", { method: "dialog", class: "stack" }, name.wrap, error,
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary", text: t("common.save") }),
        h("button", { type: "button", class: "ghost", text: t("common.cancel"), onclick: () => dialog.close() })));
    const dialog = modal(t("chat.rename"), form);
    name.input.select();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const value = name.input.value.trim();
      if (!value) return;
      try {
        conversation = await api.patch(`/api/v1/conversations/${conversation.id}`, { title: value });
      } catch (exc) {
        error.textContent = describeError(exc);
        error.hidden = false;
        return;
      }
      dialog.close();
      updateChrome();
      loadList();
      announcer(t("chat.renamed"));
    });
  }

  function exportDialog() {
    const base = `/api/v1/conversations/${conversation.id}/export`;
    const dialog = modal(t("chat.export"), h("div", { class: "stack" },
      h("p", { text: t("chat.exportExplain") }),
      h("div", { class: "row" },
        h("a", { class: "button secondary", href: `${base}?format=markdown`, download: "", text: "Markdown" }),
        h("a", { class: "button secondary", href: `${base}?format=json`, download: "", text: "JSON" }),
        h("button", { type: "button", class: "ghost", text: t("common.close"), onclick: () => dialog.close() }))));
  }

  function remove() {
    const confirmButton = h("button", { type: "button", class: "danger", text: t("chat.delete") });
    const dialog = modal(t("chat.deleteTitle"), h("div", { class: "stack" },
      h("p", { text: t("chat.deleteConfirm", { title: conversation.title }) }),
      h("div", { class: "row" }, confirmButton,
        h("button", { type: "button", class: "ghost", text: t("common.cancel"), onclick: () => dialog.close() }))));
    confirmButton.addEventListener("click", async () => {
      try {
        await api.del(`/api/v1/conversations/${conversation.id}`);
      } catch (exc) {
        confirmButton.after(h("p", { class: "error", role: "alert", text: describeError(exc) }));
        return;
      }
      dialog.close();
      announcer(t("chat.deleted"));
      navigate("#/");
    });
  }

  function openParameters() {
    const params = loadParams();
    const system = field(t("chat.systemPrompt"), h("textarea", { rows: 4, value: conversation?.system || "" }),
      t("chat.systemHint"));
    system.input.value = conversation?.system || "";
    const number = (key, attrs) => field(t(`param.${key}`), h("input", { type: "number", inputmode: "decimal",
      value: params[key], placeholder: t("param.default"), ...attrs }));
    const fields = {
      temperature: number("temperature", { min: 0, max: 2, step: 0.05 }),
      top_p: number("top_p", { min: 0, max: 1, step: 0.05 }),
      max_tokens: number("max_tokens", { min: 1, step: 1 }),
      seed: number("seed", { step: 1 }),
    };
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const form = h("form", { class: "stack" }, system.wrap,
      h("div", { class: "grid-2" }, Object.values(fields).map((f) => f.wrap)), error,
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary", text: t("common.save") }),
        h("button", { type: "button", class: "ghost", text: t("common.cancel"), onclick: () => dialog.close() })));
    const dialog = modal(t("chat.parameters"), form, { wide: true });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const next = {};
      for (const [key, f] of Object.entries(fields)) next[key] = f.input.value;
      localStorage.setItem(PARAMS_KEY, JSON.stringify(next));
      const text = system.input.value.trim() || null;
      if (conversation && text !== (conversation.system || null)) {
        try {
          conversation = await api.patch(`/api/v1/conversations/${conversation.id}`, { system: text });
        } catch (exc) {
          error.textContent = describeError(exc);
          error.hidden = false;
          return;
        }
      } else if (!conversation && text) {
        try {
          conversation = await api.post("/api/v1/conversations", { title: t("chat.new"), system: text,
            model: modelSelect.value || null });
          window.history.replaceState(null, "", `#/c/${conversation.id}`);
          conversationId = conversation.id;
          updateChrome();
          loadList();
        } catch (exc) {
          error.textContent = describeError(exc);
          error.hidden = false;
          return;
        }
      }
      dialog.close();
      announcer(t("common.saved"));
    });
  }

  // --- start ----------------------------------------------------------------------------------------
  updateChrome();
  renderThread();
  loadList();
  loadModels();
  if (conversationId) loadConversation(conversationId);
  setTimeout(resize, 0);

  return {
    element,
    cleanup() {
      disposed = true;
      document.removeEventListener("keydown", onShortcut);
      if (streaming) streaming.controller.abort();
    },
  };
}
