// Gradio 6.31's page, mended where the app cannot reach it through Gradio's API (ui/gradio_internals/page.py).
// The MultimodalTextbox's textarea has no accessible name (its label is a span beside it, not a <label>): it is
// given the component's label. Delete when the component labels its textarea.
(() => {
  const named = () => {
    for (const box of document.querySelectorAll(".multimodal-textbox")) {
      const field = box.querySelector("textarea");
      const label = box.querySelector('[data-testid="block-info"]');
      if (field && label && !field.getAttribute("aria-label")) field.setAttribute("aria-label", label.textContent.trim());
    }
  };
  new MutationObserver(named).observe(document.documentElement, { childList: true, subtree: true });
})();
