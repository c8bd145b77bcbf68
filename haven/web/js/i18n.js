// Message catalogues (haven/web/i18n/<code>.json), the language choice and the page direction.
// The language comes from the user's choice (kept in localStorage) or else the browser's languages;
// a key missing from a catalogue falls back to English (a test keeps every catalogue complete).

export const LANGUAGES = [
  { code: "en", name: "English", dir: "ltr" },
  { code: "zh-Hans", name: "简体中文", dir: "ltr" },
  { code: "zh-Hant", name: "繁體中文", dir: "ltr" },
  { code: "fr", name: "Français", dir: "ltr" },
  { code: "es", name: "Español", dir: "ltr" },
  { code: "ar", name: "العربية", dir: "rtl" },
  { code: "hi", name: "हिन्दी", dir: "ltr" },
  { code: "ur", name: "اردو", dir: "rtl" },
  { code: "sw", name: "Kiswahili", dir: "ltr" },
];
const STORAGE_KEY = "haven.language";
let current = "en";
let messages = {};
let fallback = {};
const listeners = new Set();

/** The catalogue code for a BCP 47 tag, or null: zh-CN/zh-SG → zh-Hans, zh-TW/zh-HK/zh-MO → zh-Hant. */
export function matchLanguage(tag) {
  if (!tag) return null;
  const lower = tag.toLowerCase();
  if (lower.startsWith("zh")) {
    return /hant|-tw|-hk|-mo/.test(lower) ? "zh-Hant" : "zh-Hans";
  }
  const base = lower.split("-")[0];
  const found = LANGUAGES.find((l) => l.code === base);
  return found ? found.code : null;
}

export function preferredLanguage() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && LANGUAGES.some((l) => l.code === saved)) return saved;
  for (const tag of navigator.languages || [navigator.language]) {
    const code = matchLanguage(tag);
    if (code) return code;
  }
  return "en";
}

async function fetchCatalogue(code) {
  const response = await fetch(`/ui/i18n/${code}.json`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`catalogue ${code}: HTTP ${response.status}`);
  return response.json();
}

export async function setLanguage(code, { save = false } = {}) {
  if (!LANGUAGES.some((l) => l.code === code)) code = "en";
  if (!Object.keys(fallback).length) fallback = await fetchCatalogue("en");
  messages = code === "en" ? fallback : await fetchCatalogue(code);
  current = code;
  if (save) localStorage.setItem(STORAGE_KEY, code);
  const lang = LANGUAGES.find((l) => l.code === code);
  document.documentElement.lang = code;
  document.documentElement.dir = lang.dir;
  for (const listener of listeners) listener(code);
}

export function language() {
  return current;
}

export function onLanguageChange(listener) {
  listeners.add(listener);
}

/** t("chat.send") or t("chat.tokens", {n: 3}); {name} placeholders are replaced, never parsed as HTML. */
export function t(key, vars = {}) {
  let text = messages[key] ?? fallback[key];
  if (text === undefined) {
    console.warn(`i18n: missing key ${key}`);
    return key;
  }
  for (const [name, value] of Object.entries(vars)) {
    text = text.split(`{${name}}`).join(String(value));
  }
  return text;
}

export function formatNumber(value, options = {}) {
  return new Intl.NumberFormat(current, options).format(value);
}

export function formatDateTime(iso) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(current, { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
}
