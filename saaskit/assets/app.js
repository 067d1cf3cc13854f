// saaskit's one script: progressive enhancement only; every page works without it.
// A button with data-copy="<element id>" copies that element's text; without a script it
// stays hidden.
document.querySelectorAll("button[data-copy]").forEach((b) => { b.hidden = false; });
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 2000);
  });
});
