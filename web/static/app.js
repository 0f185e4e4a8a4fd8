// filmroll's progressive JavaScript: everything works without it, except the live scan status and lazy months.
// - thumbhash placeholders: each <img data-thumbhash> gets its decoded thumbhash as a background (a data URL
//   drawn by the vendored decoder) until the thumbnail itself has loaded;
// - a thumbnail that cannot be loaded (not rendered yet, offline) is marked `missing`;
// - forms with data-confirm ask first.
import { thumbHashToDataURL } from "./vendor/thumbhash-0.1.1.js";

function placeholder(img) {
  const hash = img.dataset.thumbhash;
  if (!hash || img.dataset.placeholder) return;
  img.dataset.placeholder = "1";
  if (img.complete && img.naturalWidth) return; // already there (cache)
  try {
    const bytes = Uint8Array.from(atob(hash), (c) => c.charCodeAt(0));
    img.style.backgroundImage = `url("${thumbHashToDataURL(bytes)}")`;
    img.classList.add("placeholder");
    img.addEventListener("load", () => img.classList.remove("placeholder"), { once: true });
  } catch (error) {
    console.warn("thumbhash", error);
  }
}

function enhance(root) {
  root.querySelectorAll("img[data-thumbhash]").forEach(placeholder);
  root.querySelectorAll("img").forEach((img) => {
    if (img.complete && img.naturalWidth === 0 && img.src) img.classList.add("missing");
  });
}

document.addEventListener(
  "error",
  (event) => {
    if (event.target instanceof HTMLImageElement) event.target.classList.add("missing");
  },
  true,
);

document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

document.addEventListener("htmx:afterSwap", (event) => enhance(event.target));
enhance(document);
