// Model output and user text → Markdown → HTML → DOMPurify → DOM, then code highlighting and LaTeX.
// Untrusted all the way: raw HTML in the Markdown is shown as text, the sanitiser keeps a short allowlist
// of tags and no style or event attributes, images are never loaded (they become links), links to other
// hosts open in a new tab only when clicked (no referrer), and javascript:/data: links lose their href.
// LaTeX ($…$, $$…$$, \(…\), \[…\]) is rendered by KaTeX into the sanitised DOM with trust off.
import { Marked } from "../vendor/marked/marked.esm.js";
import DOMPurify from "../vendor/dompurify/purify.es.mjs";
import hljs from "../vendor/highlight/core.min.js";
import bash from "../vendor/highlight/languages/bash.min.js";
import c from "../vendor/highlight/languages/c.min.js";
import cpp from "../vendor/highlight/languages/cpp.min.js";
import css from "../vendor/highlight/languages/css.min.js";
import diff from "../vendor/highlight/languages/diff.min.js";
import go from "../vendor/highlight/languages/go.min.js";
import java from "../vendor/highlight/languages/java.min.js";
import javascript from "../vendor/highlight/languages/javascript.min.js";
import json from "../vendor/highlight/languages/json.min.js";
import markdown from "../vendor/highlight/languages/markdown.min.js";
import python from "../vendor/highlight/languages/python.min.js";
import rust from "../vendor/highlight/languages/rust.min.js";
import shell from "../vendor/highlight/languages/shell.min.js";
import sql from "../vendor/highlight/languages/sql.min.js";
import typescript from "../vendor/highlight/languages/typescript.min.js";
import xml from "../vendor/highlight/languages/xml.min.js";
import yaml from "../vendor/highlight/languages/yaml.min.js";

const GRAMMARS = { bash, c, cpp, css, diff, go, java, javascript, json, markdown, python, rust, shell, sql,
  typescript, xml, yaml };
for (const [name, grammar] of Object.entries(GRAMMARS)) hljs.registerLanguage(name, grammar);

const ALLOWED_TAGS = ["a", "blockquote", "br", "code", "del", "details", "div", "em", "h1", "h2", "h3", "h4",
  "h5", "h6", "hr", "input", "kbd", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "summary", "sup",
  "table", "tbody", "td", "th", "thead", "tr", "ul"];
const ALLOWED_ATTR = ["href", "title", "class", "data-tex", "data-display", "colspan", "rowspan", "align",
  "start", "type", "checked", "disabled"];
const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
    "'": "&#39;" })[ch]);
}

function mathExtension(name, level, pattern, display) {
  return {
    name,
    level,
    start(src) {
      const match = src.match(level === "block" ? /\$\$|\\\[/ : /\$|\\\(/);
      return match ? match.index : undefined;
    },
    tokenizer(src) {
      const match = pattern.exec(src);
      if (match) return { type: name, raw: match[0], tex: (match[1] ?? match[2]).trim() };
      return undefined;
    },
    renderer(token) {
      const tag = display ? "div" : "span";
      return `<${tag} class="math" data-display="${display}" data-tex="${escapeHtml(token.tex)}">` +
        `${escapeHtml(token.raw)}</${tag}>`;
    },
  };
}

const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    // Raw HTML written by a model or a user is shown, never interpreted.
    html({ text }) {
      return escapeHtml(text);
    },
    image({ href, text }) {
      return `<a href="${escapeHtml(href || "")}" class="image-link">${escapeHtml(text || href || "")}</a>`;
    },
    code({ text, lang }) {
      const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
      let body;
      if (language && hljs.getLanguage(language)) {
        body = hljs.highlight(text, { language, ignoreIllegals: true }).value;
      } else {
        body = escapeHtml(text);
      }
      const label = language ? `<span class="code-lang">${escapeHtml(language)}</span>` : "";
      return `<div class="code-block">${label}<pre><code class="hljs">${body}</code></pre></div>`;
    },
  },
  extensions: [
    mathExtension("blockMath", "block", /^(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\])/, true),
    mathExtension("inlineMath", "inline", /^(?:\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\d)|\\\(([\s\S]+?)\\\))/, false),
  ],
});

const purifier = DOMPurify(window);
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href");
    let url = null;
    try {
      url = href ? new URL(href, window.location.href) : null;
    } catch {
      url = null;
    }
    if (!url || !SAFE_PROTOCOLS.has(url.protocol)) {
      node.removeAttribute("href");
      node.classList.add("link-removed");
      return;
    }
    if (url.origin !== window.location.origin) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
      node.classList.add("external");
      node.setAttribute("title", url.host);
    }
  }
  if (node.tagName === "INPUT") {
    // Only GFM's task-list checkboxes, and never editable.
    if (node.getAttribute("type") !== "checkbox") node.remove();
    else node.setAttribute("disabled", "");
  }
});

const PURIFY_CONFIG = { ALLOWED_TAGS, ALLOWED_ATTR, ALLOW_DATA_ATTR: false, RETURN_DOM_FRAGMENT: true };

// KaTeX writes three presentational styles with setAttribute("style"): a parse error's colour, the MathML
// border of \fcolorbox and \pmb's shadow. The page's CSP (style-src 'self') blocks and reports each one, so
// a model's broken formula filled the console with violations and lost its red. CSP does not govern CSSOM
// writes (a declaration holds no code), and these values are KaTeX's own (colours pass its validator), so
// for the length of the synchronous render they go there.
function renderWithoutStyleAttributes(render) {
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (String(name).toLowerCase() !== "style") return setAttribute.call(this, name, value);
    if (this.style) this.style.cssText = String(value);
    return undefined;
  };
  try {
    render();
  } finally {
    Element.prototype.setAttribute = setAttribute;
  }
}

/** A sanitised DocumentFragment for Markdown `text`. */
export function renderMarkdown(text, { copyLabel = "Copy", onCopy } = {}) {
  const html = marked.parse(String(text ?? ""));
  const fragment = purifier.sanitize(html, PURIFY_CONFIG);
  for (const el of fragment.querySelectorAll(".math[data-tex]")) {
    const katex = window.katex;
    if (!katex) continue;
    try {
      el.textContent = "";
      renderWithoutStyleAttributes(() => katex.render(el.dataset.tex, el, {
        displayMode: el.dataset.display === "true", throwOnError: false, trust: false, strict: "ignore",
        maxSize: 20, maxExpand: 500, output: "htmlAndMathml" }));
    } catch {
      el.textContent = el.dataset.tex;
    }
  }
  // Code and wide formulas scroll sideways: reachable with the keyboard too.
  for (const el of fragment.querySelectorAll(".code-block pre, div.math")) el.setAttribute("tabindex", "0");
  if (onCopy) {
    for (const block of fragment.querySelectorAll(".code-block")) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = copyLabel;
      button.addEventListener("click", () => onCopy(block.querySelector("code").textContent, button));
      block.prepend(button);
    }
  }
  return fragment;
}
