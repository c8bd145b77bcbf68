// Light, dark or the system's choice; kept in localStorage and applied as <html data-theme>.
const KEY = "haven.theme";
const media = window.matchMedia("(prefers-color-scheme: dark)");

export function themeChoice() {
  const saved = localStorage.getItem(KEY);
  return saved === "light" || saved === "dark" ? saved : "system";
}

export function applyTheme(choice = themeChoice()) {
  if (choice === "system") localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, choice);
  const dark = choice === "dark" || (choice === "system" && media.matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
}

media.addEventListener("change", () => applyTheme());
