"use strict";

(function () {
  const form = document.getElementById("form");
  const source = document.getElementById("source");
  const beam = document.getElementById("beam");
  const button = document.getElementById("translate");
  const status = document.getElementById("status");
  const result = document.getElementById("result");
  const direction = document.getElementById("direction");
  const footer = document.getElementById("model");

  async function loadModel() {
    try {
      const response = await fetch("/v1/models");
      if (!response.ok) throw new Error("HTTP " + response.status);
      const model = (await response.json()).models[0];
      direction.textContent = model.source_language + " → " + model.target_language;
      document.getElementById("target-heading").textContent = "Translation (" + model.target_language + ")";
      footer.textContent = model.architecture + " · " + model.parameters.toLocaleString("en") + " parameters · vocabularies " +
        model.source_vocab_size + " / " + model.target_vocab_size + " · checkpoint " + model.id;
    } catch (e) {
      direction.textContent = "model information unavailable (" + e.message + ")";
    }
  }

  function showError(text) {
    result.replaceChildren();
    status.textContent = text;
    status.classList.add("error");
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const lines = source.value.split("\n").map(function (l) { return l.trim(); }).filter(function (l) { return l.length > 0; });
    if (lines.length === 0) { showError("Type a sentence first."); return; }
    button.disabled = true;
    status.classList.remove("error");
    status.textContent = "Translating…";
    try {
      const response = await fetch("/v1/translate", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text: lines, beam: Number(beam.value), n_best: 1 }),
      });
      const body = await response.json();
      if (!response.ok) {
        showError((body.title || "Error") + ": " + (body.detail || ("HTTP " + response.status)));
        return;
      }
      result.replaceChildren.apply(result, body.translations.map(function (t) {
        const item = document.createElement("li");
        item.className = "translation";
        item.textContent = t.text;
        if (typeof t.score === "number") item.title = "score " + t.score.toFixed(3);
        return item;
      }));
      status.textContent = "";
    } catch (e) {
      showError("Request failed: " + e.message);
    } finally {
      button.disabled = false;
    }
  });

  loadModel();
})();
