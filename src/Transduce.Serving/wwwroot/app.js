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
  const attention = document.getElementById("attention");
  const attentionView = document.getElementById("attention-view");
  const heatmap = document.getElementById("heatmap");
  const modelSelect = document.getElementById("model-select");
  const modelLabel = document.getElementById("model-label");
  const keyForm = document.getElementById("key-form");
  const keyInput = document.getElementById("api-key");
  const sourceLang = document.getElementById("source-lang");
  const targetLang = document.getElementById("target-lang");
  let models = [];

  // A multilingual model's languages (NLLB codes) as the two choices; hidden for a model without.
  function showLanguages(model) {
    const codes = model.languages || [];
    function fill(select, chosen) {
      select.replaceChildren.apply(select, codes.map(function (code) {
        const option = document.createElement("option");
        option.value = option.textContent = code;
        return option;
      }));
      if (chosen) select.value = chosen;
    }
    fill(sourceLang, model.default_source_lang);
    fill(targetLang, model.default_target_lang || codes.find(function (c) { return c !== model.default_source_lang; }));
    document.querySelectorAll(".lang").forEach(function (e) { e.hidden = codes.length === 0; });
  }

  // With --api-key-file the API needs "Authorization: Bearer KEY": asked for once, kept for this tab only.
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const key = sessionStorage.getItem("transduce-api-key");
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  function askForKey() {
    keyForm.hidden = false;
    keyInput.focus();
  }

  keyForm.addEventListener("submit", function (event) {
    event.preventDefault();
    sessionStorage.setItem("transduce-api-key", keyInput.value.trim());
    keyForm.hidden = true;
    loadModel();
  });

  // Viridis-like ramp: dark blue (0) → green → yellow (1).
  const ramp = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function colour(w) {
    const x = Math.max(0, Math.min(1, w)) * (ramp.length - 1);
    const i = Math.min(ramp.length - 2, Math.floor(x));
    const f = x - i;
    const c = ramp[i].map(function (v, k) { return Math.round(v + f * (ramp[i + 1][k] - v)); });
    return "rgb(" + c.join(",") + ")";
  }

  // Draws weights[target][source] as a grid with the tokens as labels (source on top, target on the left).
  function drawHeatmap(att, title) {
    const ctx = heatmap.getContext("2d");
    const font = "13px system-ui, sans-serif";
    ctx.font = font;
    const width = function (t) { return ctx.measureText(t).width; };
    const left = Math.ceil(Math.max.apply(null, att.target_tokens.map(width))) + 12;
    const top = Math.ceil(Math.max.apply(null, att.source_tokens.map(width))) + 12;
    const cell = 34;
    heatmap.width = left + cell * att.source_tokens.length + 10;
    heatmap.height = top + cell * att.target_tokens.length + 10;
    heatmap.setAttribute("aria-label", "cross-attention of: " + title);
    ctx.font = font;
    ctx.fillStyle = getComputedStyle(document.body).color;
    ctx.textBaseline = "middle";
    att.target_tokens.forEach(function (t, r) {
      ctx.textAlign = "right";
      ctx.fillText(t, left - 6, top + r * cell + cell / 2);
    });
    att.source_tokens.forEach(function (t, c) {
      ctx.save();
      ctx.translate(left + c * cell + cell / 2, top - 6);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left";
      ctx.fillText(t, 0, 0);
      ctx.restore();
    });
    att.weights.forEach(function (row, r) {
      row.forEach(function (w, c) {
        ctx.fillStyle = colour(w);
        ctx.fillRect(left + c * cell, top + r * cell, cell - 1, cell - 1);
      });
    });
    attentionView.hidden = false;
  }

  function showModel(model) {
    direction.textContent = model.source_language + " → " + model.target_language;
    attention.disabled = !model.attention;
    attention.checked = !!model.attention;
    showLanguages(model);
    document.getElementById("target-heading").textContent = "Translation (" + model.target_language + ")";
    footer.textContent = model.architecture + " · " + model.parameters.toLocaleString("en") + " parameters · vocabularies " +
      model.source_vocab_size + " / " + model.target_vocab_size + " · checkpoint " + model.id;
  }

  async function loadModel() {
    try {
      const response = await fetch("/v1/models", { headers: headers() });
      if (response.status === 401) { direction.textContent = "this service needs an API key"; askForKey(); return; }
      if (!response.ok) throw new Error("HTTP " + response.status);
      models = (await response.json()).models;
      modelSelect.replaceChildren.apply(modelSelect, models.map(function (m) {
        const option = document.createElement("option");
        option.value = m.name;
        option.textContent = m.name + " (" + m.source_language + " → " + m.target_language + ")";
        return option;
      }));
      modelSelect.hidden = modelLabel.hidden = models.length < 2;
      showModel(models[0]);
    } catch (e) {
      direction.textContent = "model information unavailable (" + e.message + ")";
    }
  }

  modelSelect.addEventListener("change", function () {
    const chosen = models.find(function (m) { return m.name === modelSelect.value; });
    if (chosen) showModel(chosen);
  });

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
      const request = { text: lines, beam: Number(beam.value), n_best: 1, attention: attention.checked };
      if (models.length > 1) request.model = modelSelect.value;
      if (!sourceLang.hidden) { request.source_lang = sourceLang.value; request.target_lang = targetLang.value; }
      const response = await fetch("/v1/translate", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify(request),
      });
      if (response.status === 401) askForKey();
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
        if (t.attention) {
          item.classList.add("has-attention");
          item.tabIndex = 0;
          item.addEventListener("click", function () { drawHeatmap(t.attention, t.text); });
          item.addEventListener("keydown", function (e) { if (e.key === "Enter") drawHeatmap(t.attention, t.text); });
        }
        return item;
      }));
      attentionView.hidden = true;
      const first = body.translations.find(function (t) { return t.attention; });
      if (first) drawHeatmap(first.attention, first.text);
      status.textContent = "";
    } catch (e) {
      showError("Request failed: " + e.message);
    } finally {
      button.disabled = false;
    }
  });

  loadModel();
})();
