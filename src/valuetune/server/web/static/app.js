// valuetune: small progressive enhancements; every page works without this file.
"use strict";

// Copy buttons: shown only when the clipboard can be written.
function setUpCopyButtons() {
  if (!navigator.clipboard) return;
  document.querySelectorAll("button.copy[data-copy]").forEach((button) => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(source.value);
        button.textContent = "Copied";
      } catch (err) {
        source.select();
        button.textContent = "Press Ctrl+C to copy";
      }
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  });
}

// Live figures on the admin dashboard: elements with data-live="name" are refreshed.
function setUpLiveFigures() {
  const board = document.querySelector("[data-live-source]");
  if (!board) return;
  const source = board.dataset.liveSource;
  const refresh = async () => {
    try {
      const reply = await fetch(source, { credentials: "same-origin", cache: "no-store" });
      if (!reply.ok) return;
      const figures = await reply.json();
      for (const [name, value] of Object.entries(figures)) {
        document.querySelectorAll(`[data-live="${name}"]`).forEach((el) => { el.textContent = value; });
      }
    } catch (err) { /* offline for a moment: try again at the next tick */ }
  };
  setInterval(refresh, 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  setUpCopyButtons();
  setUpLiveFigures();
});
