"use strict";

(function () {
  const $ = function (id) { return document.getElementById(id); };
  const form = $("form"), source = $("source"), beam = $("beam"), button = $("translate"), status = $("status");
  const result = $("result"), direction = $("direction"), footer = $("model"), copyButton = $("copy");
  const attention = $("attention"), attentionNote = $("attention-note"), attentionView = $("attention-view"), heatmap = $("heatmap");
  const modelSelect = $("model-select"), modelLabel = $("model-label"), keyForm = $("key-form"), keyInput = $("api-key");
  const sourceLang = $("source-lang"), targetLang = $("target-lang"), swap = $("swap"), task = $("task");
  const alternatives = $("alternatives"), alternativesList = $("alternatives-list"), alternativesHint = $("alternatives-hint");
  const DEBOUNCE_MS = 400;
  const MAX_N_BEST = 5;
  let models = [];
  let current = null;        // the model shown
  let inflight = null;       // AbortController of the request under way
  let timer = 0;             // debounce (and retry) timer
  let lastSent = "";         // the request last answered, to skip re-sending an unchanged one
  let shown = [];            // per sentence of the output: { result, chosen, span }
  let selected = -1;         // the sentence whose alternatives are listed

  // ---- Languages ---------------------------------------------------------------------------------------------------

  const names = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "language" }) : null;
  // "fra_Latn" → "French (fra_Latn)"; a code the browser does not know stays as it is.
  function languageName(code) {
    let name = null;
    try { name = names && names.of(code.split("_")[0]); } catch (e) { name = null; }
    return name && name.toLowerCase() !== code.split("_")[0].toLowerCase() ? name + " (" + code + ")" : code;
  }

  // A multilingual model's languages (NLLB codes) as the two pickers; plain labels for a model with one direction.
  function showLanguages(model) {
    const codes = model.languages || [];
    function fill(select, chosen) {
      select.replaceChildren.apply(select, codes.map(function (code) {
        const option = document.createElement("option");
        option.value = code;
        option.textContent = languageName(code);
        return option;
      }));
      if (chosen) select.value = chosen;
    }
    fill(sourceLang, model.default_source_lang);
    fill(targetLang, model.default_target_lang || codes.find(function (c) { return c !== model.default_source_lang; }));
    const multilingual = codes.length > 0;
    document.querySelectorAll(".lang").forEach(function (e) { e.hidden = !multilingual; });
    swap.hidden = !multilingual;
    $("source-label").textContent = multilingual ? "From" : model.source_language;
    $("target-heading").textContent = multilingual ? "To" : model.target_language;
  }

  swap.addEventListener("click", function () {
    const from = sourceLang.value;
    sourceLang.value = targetLang.value;
    targetLang.value = from;
    const translation = outputText();
    if (translation) source.value = translation;
    translateNow();
  });

  // ---- API key -----------------------------------------------------------------------------------------------------

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

  // ---- Attention heatmap -------------------------------------------------------------------------------------------

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

  // Why a model shows no attention, in a sentence.
  function noAttentionReason(model) {
    if (model.architecture === "gru")
      return "No attention view for this model: it is a GRU encoder–decoder, whose decoder reads the whole sentence as one " +
        "summary vector, so no output word looks at particular source words.";
    return "No attention view for this model: its architecture (" + model.architecture + ") has no cross-attention between " +
      "the translation and the source.";
  }

  // ---- Model -------------------------------------------------------------------------------------------------------

  function showModel(model) {
    current = model;
    direction.textContent = model.languages ? "multilingual · " + model.languages.length + " languages"
      : model.source_language + " → " + model.target_language;
    attention.disabled = !model.attention;
    attention.checked = !!model.attention;
    attentionNote.hidden = !!model.attention;
    attentionNote.textContent = model.attention ? "" : noAttentionReason(model);
    if (!model.attention) attentionView.hidden = true;
    if (model.default_beam) {
      const b = String(model.default_beam);
      if (![].some.call(beam.options, function (o) { return o.value === b; })) beam.add(new Option(b, b));
      beam.value = b;
    }
    showLanguages(model);
    // A model's tasks (T5's task_specific_params: their prefix and settings apply), or the text as typed.
    task.replaceChildren.apply(task, [new Option("none: the text as typed", "")].concat((model.tasks || []).map(function (t) { return new Option(t, t); })));
    if (model.tasks && model.tasks.length) task.value = model.tasks[0];
    document.querySelectorAll(".task").forEach(function (e) { e.hidden = !model.tasks; });
    footer.textContent = model.name + " · " + model.architecture + " · " + model.parameters.toLocaleString("en") + " parameters · vocabularies " +
      model.source_vocab_size + " / " + model.target_vocab_size + " · checkpoint " + model.id;
  }

  async function loadModel() {
    try {
      const response = await fetch("/v1/models", { headers: headers() });
      if (response.status === 401) { direction.textContent = "this service needs an API key"; askForKey(); return; }
      if (!response.ok) throw new Error("the service answered " + response.status);
      models = (await response.json()).models;
      modelSelect.replaceChildren.apply(modelSelect, models.map(function (m) {
        const option = document.createElement("option");
        option.value = m.name;
        option.textContent = m.name + (m.languages ? " (multilingual)" : " (" + m.source_language + " → " + m.target_language + ")");
        return option;
      }));
      modelSelect.hidden = modelLabel.hidden = models.length < 2;
      showModel(models[0]);
      if (source.value.trim()) translateNow();
    } catch (e) {
      direction.textContent = "model information unavailable (" + e.message + ")";
    }
  }

  modelSelect.addEventListener("change", function () {
    const chosen = models.find(function (m) { return m.name === modelSelect.value; });
    if (chosen) { showModel(chosen); translateNow(); }
  });

  // ---- Sentences ---------------------------------------------------------------------------------------------------

  const segmenter = typeof Intl.Segmenter === "function" ? new Intl.Segmenter(undefined, { granularity: "sentence" }) : null;

  // Each line of the text is a paragraph; each paragraph is split into sentences (the model translates sentences).
  function split(text) {
    return text.split("\n").map(function (line) {
      const trimmed = line.trim();
      if (!trimmed) return [];
      const parts = segmenter ? Array.from(segmenter.segment(trimmed), function (s) { return s.segment.trim(); })
        : trimmed.split(/(?<=[.!?…])\s+/);
      return parts.filter(function (s) { return s.length > 0; });
    });
  }

  // A translation's text with each <unk> as a marked placeholder.
  function render(element, text) {
    const pieces = text.split("<unk>");
    element.replaceChildren();
    pieces.forEach(function (piece, i) {
      if (i > 0) {
        const mark = document.createElement("mark");
        mark.className = "unk";
        mark.textContent = "[?]";
        mark.title = "a word the model could not translate (<unk>: not in its vocabulary)";
        element.append(mark);
      }
      if (piece) element.append(piece);
    });
  }

  function outputText() {
    return [].map.call(result.children, function (p) { return p.textContent; }).join("\n").trim();
  }

  // ---- Errors in plain words ---------------------------------------------------------------------------------------

  // The API's problem+json, as a sentence a person can act on; retryAfter in seconds or null.
  function explain(status, problem, sentences, retryAfter) {
    const p = problem || {};
    const index = /^text\[(\d+)\]$/.exec(p.field || "");
    const quote = function (s) { return "“" + (s.length > 40 ? s.slice(0, 40) + "…" : s) + "”"; };
    switch (status) {
      case 401:
        return p.detail === "the API key is not valid" ? "The API key is not accepted: enter it again." : "This service needs an API key: enter it above.";
      case 404:
        return "The model “" + (current && current.name) + "” is no longer served here: reload the page.";
      case 413:
        if (p.limit === "max_chars" && index)
          return "The sentence " + quote(sentences[Number(index[1])] || "") + " is too long: " + p.requested + " characters, and this service takes at most " +
            p.limit_value + ". Break it into shorter sentences.";
        if (p.limit === "max_sentences")
          return "That is " + p.requested + " sentences; this service translates at most " + p.limit_value + " at a time. Translate a shorter piece.";
        return "This text is too long to translate in one go. Translate a shorter piece.";
      case 422:
        if (p.limit === "max_attention_cells") return "The attention view would be too large for this much text: turn off “show attention”, or translate less.";
        return "Searching this much text with a beam of " + beam.value + " is too much work for the service: choose a smaller beam, or translate less.";
      case 400:
        if (p.field === "source_lang" || p.field === "target_lang") return "Choose languages this model knows.";
        if (p.field === "beam" || p.field === "n_best") return "This service does not allow a beam that large: choose a smaller one.";
        if (p.field === "task") return "This model has no such task: choose one of its tasks.";
        if (p.field === "attention") return "This model has no attention view: turn off “show attention”.";
        return "The service could not read the request (" + (p.detail || "bad request") + ").";
      case 503:
        if (p.title === "Shutting down") return "The service is shutting down; try again once it is back.";
        return "The service is busy right now; trying again in " + (retryAfter || 1) + " s.";
      case 504:
        return "The translation took too long. Translate a shorter piece or choose a smaller beam.";
      case 500:
        return "The service failed on this text (an internal error, logged on the server). Try again, or change the text.";
      default:
        return "The service answered " + status + (p.title ? " (" + p.title + ")" : "") + ".";
    }
  }

  function showError(text) {
    status.textContent = text;
    status.classList.add("error");
  }

  // ---- Translating -------------------------------------------------------------------------------------------------

  function translateSoon() {
    clearTimeout(timer);
    timer = setTimeout(translateNow, DEBOUNCE_MS);
  }

  async function translateNow() {
    clearTimeout(timer);
    if (!current) return;
    const paragraphs = split(source.value);
    const sentences = paragraphs.flat();
    if (sentences.length === 0) {
      if (inflight) inflight.abort();
      result.replaceChildren();
      shown = [];
      copyButton.disabled = true;
      closeAlternatives();
      attentionView.hidden = true;
      status.classList.remove("error");
      status.textContent = "";
      lastSent = "";
      return;
    }
    const b = Number(beam.value);
    const request = { text: sentences, beam: b, n_best: Math.min(b, MAX_N_BEST), attention: attention.checked && !attention.disabled };
    if (models.length > 1) request.model = current.name;
    if (current.tasks && task.value) request.task = task.value;
    if (current.languages) { request.source_lang = sourceLang.value; request.target_lang = targetLang.value; }
    const body = JSON.stringify(request);
    if (body === lastSent && !status.classList.contains("error")) return;
    if (inflight) inflight.abort();   // the text changed: the previous answer is no longer wanted
    const controller = new AbortController();
    inflight = controller;
    status.classList.remove("error");
    status.textContent = "Translating…";
    result.classList.add("stale");
    const started = performance.now();
    let response, answer;
    try {
      response = await fetch("/v1/translate", {
        method: "POST", headers: headers({ "Content-Type": "application/json" }), body: body, signal: controller.signal,
      });
      answer = await response.json().catch(function () { return null; });
    } catch (e) {
      if (controller.signal.aborted) return;
      inflight = null;
      result.classList.remove("stale");
      showError("Cannot reach the translation service: is it still running?");
      return;
    }
    if (controller.signal.aborted) return;
    inflight = null;
    result.classList.remove("stale");
    if (!response.ok) {
      if (response.status === 401) askForKey();
      const retry = Number(response.headers.get("Retry-After")) || null;
      showError(explain(response.status, answer, sentences, retry));
      if (response.status === 503 && retry) timer = setTimeout(translateNow, retry * 1000);
      return;
    }
    lastSent = body;
    const ms = Math.round(performance.now() - started);
    show(paragraphs, answer.translations);
    status.textContent = (ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s") + " · " + answer.model + " · checkpoint " + current.id;
  }

  // Puts the translations back into the paragraphs of the source, one clickable span per sentence.
  function show(paragraphs, translations) {
    shown = [];
    let k = 0;
    result.replaceChildren.apply(result, paragraphs.map(function (sentences) {
      const p = document.createElement("p");
      sentences.forEach(function (_, j) {
        const t = translations[k];
        const span = document.createElement("span");
        span.className = "sentence";
        span.tabIndex = 0;
        span.dataset.index = String(k);
        render(span, t.text);
        const entry = { result: t, chosen: 0, span: span };
        shown.push(entry);
        const i = k;
        span.addEventListener("click", function () { select(i); });
        span.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(i); } });
        if (j > 0) p.append(" ");
        p.append(span);
        k++;
      });
      return p;
    }));
    copyButton.disabled = shown.length === 0;
    closeAlternatives();
    attentionView.hidden = true;
    const first = shown.find(function (s) { return s.result.attention; });
    if (first) drawHeatmap(first.result.attention, first.result.text);
  }

  // ---- Alternatives ------------------------------------------------------------------------------------------------

  function select(i) {
    const entry = shown[i];
    if (!entry) return;
    selected = i;
    shown.forEach(function (s, k) { s.span.classList.toggle("selected", k === i); });
    if (entry.result.attention) drawHeatmap(entry.result.attention, entry.result.text);
    const list = entry.result.n_best || [];
    alternativesHint.textContent = list.length > 1 ? "Translations of sentence " + (i + 1) + " found by the search, best first; pick one to use it."
      : "The search kept only one translation of this sentence" + (beam.value === "1" ? ": choose a beam of 4 or more for alternatives." : ".");
    alternativesList.replaceChildren.apply(alternativesList, list.map(function (candidate, k) {
      const item = document.createElement("li");
      const choice = document.createElement("button");
      choice.type = "button";
      choice.className = "alternative" + (k === entry.chosen ? " chosen" : "");
      render(choice, candidate.text);
      if (typeof candidate.score === "number") choice.title = "score " + candidate.score.toFixed(3);
      choice.addEventListener("click", function () { choose(i, k); });
      item.append(choice);
      return item;
    }));
    alternatives.hidden = false;
  }

  function choose(i, k) {
    const entry = shown[i];
    entry.chosen = k;
    render(entry.span, entry.result.n_best[k].text);
    entry.span.classList.toggle("changed", k !== 0);
    closeAlternatives();
    entry.span.focus();
  }

  function closeAlternatives() {
    alternatives.hidden = true;
    selected = -1;
    shown.forEach(function (s) { s.span.classList.remove("selected"); });
  }

  // ---- Copy --------------------------------------------------------------------------------------------------------

  async function copy() {
    const text = outputText();
    if (!text) return;
    try {
      await navigator.clipboard.writeText(text);
      copyButton.textContent = "Copied";
      setTimeout(function () { copyButton.textContent = "Copy"; }, 1500);
    } catch (e) {
      showError("The browser did not allow copying; select the translation and copy it by hand.");
    }
  }

  // ---- Events ------------------------------------------------------------------------------------------------------

  source.addEventListener("input", translateSoon);
  [beam, attention, sourceLang, targetLang, task].forEach(function (e) { e.addEventListener("change", translateNow); });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    lastSent = "";   // an explicit request always goes out
    if (!source.value.trim()) { showError("Type a sentence first."); return; }
    translateNow();
  });
  copyButton.addEventListener("click", copy);
  document.addEventListener("keydown", function (e) {
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.key === "Enter") { e.preventDefault(); form.requestSubmit(); }
    else if (mod && e.shiftKey && (e.key === "C" || e.key === "c")) { e.preventDefault(); copy(); }
    else if (mod && e.shiftKey && (e.key === "S" || e.key === "s") && !swap.hidden) { e.preventDefault(); swap.click(); }
    else if (e.key === "Escape" && selected >= 0) { const s = shown[selected]; closeAlternatives(); if (s) s.span.focus(); }
  });

  loadModel();
})();
