// charrnn playground: stream a continuation, or colour a text by the model's surprise.
//
// Everything shown comes from the user, the model or the server, so it is put into the page
// as text only (textContent, Text nodes, the title attribute), never parsed as HTML: a
// "<script>" in a prompt or in what the model writes is shown as those characters.
"use strict";

const $ = (id) => document.getElementById(id);
let running = null; // the AbortController of the request being streamed

function number(id) {
  const value = Number($(id).value);
  return Number.isFinite(value) ? value : undefined;
}

function showError(id, message) {
  $(id).hidden = !message;
  $(id).textContent = message || "";
}

async function errorMessage(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `the server answered ${response.status}`;
  }
}

async function describeModel() {
  try {
    const card = (await (await fetch("/v1/models")).json()).data[0];
    const c = card.charrnn || {};
    $("model").textContent = `${card.id} · ${c.cell} ${c.layers}×${c.hidden} · ${c.vocab_size} characters`;
    if (c.max_chars) $("length").max = c.max_chars;
  } catch {
    $("model").textContent = "the server does not answer";
  }
}

// The `data:` payloads of a server-sent event stream, as they arrive.
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

function completionRequest() {
  const prompt = $("prompt").value || "\n"; // an empty prompt: start a fresh text
  const body = { prompt, max_tokens: number("length"), stream: true };
  if ($("beam").checked) {
    body.width = number("width");
  } else {
    body.temperature = number("temperature");
    body.top_p = number("top-p");
    if ($("seed").value !== "") body.seed = number("seed");
  }
  return body;
}

function setRunning(controller, status) {
  running = controller;
  $("generate").disabled = !!controller;
  $("stop").disabled = !controller;
  $("status").textContent = status;
}

async function generate() {
  if (running) running.abort();
  showError("error", "");
  const body = completionRequest();
  const output = $("output");
  const text = document.createTextNode("");
  $("output-prompt").textContent = body.prompt === "\n" ? "" : body.prompt;
  $("output-text").replaceChildren(text);
  output.dataset.state = "running";
  const controller = new AbortController();
  setRunning(controller, "writing…");
  const started = performance.now();
  let written = 0;
  let reason = "";
  try {
    const response = await fetch("/v1/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    for await (const data of events(response.body)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices) {
        if (choice.index !== 0) continue;
        text.appendData(choice.text);
        written += [...choice.text].length;
        if (choice.finish_reason) reason = choice.finish_reason;
      }
      $("status").textContent = `${written} characters…`;
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    const why = reason === "stop" ? ", stopped at the stop string" : "";
    setRunning(null, `${written} characters in ${seconds} s${why}`);
    output.dataset.state = "done";
  } catch (error) {
    const stopped = error.name === "AbortError";
    setRunning(null, stopped ? `stopped after ${written} characters` : "");
    if (!stopped) showError("error", error.message);
    output.dataset.state = stopped ? "stopped" : "failed";
  }
}

// 0 bits white, 4 bits yellow, 8 or more red: the colours of `charrnn score`.
function surpriseColour(bits) {
  const x = Math.min(Math.max(bits / 8, 0), 1);
  const [r, g, b] = x < 0.5 ? [255, 255, Math.round(255 * (1 - 2 * x))] : [255, Math.round(255 * (2 - 2 * x)), 0];
  const ink = 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#000" : "#fff";
  return [`rgb(${r}, ${g}, ${b})`, ink];
}

async function score() {
  showError("score-error", "");
  $("score-summary").textContent = "scoring…";
  $("scored").dataset.state = "running";
  try {
    const response = await fetch("/v1/score", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: $("score-text").value }),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const result = await response.json();
    const pieces = document.createDocumentFragment();
    [...result.text].forEach((character, i) => { // code points, as the server counts them
      const span = document.createElement("span");
      span.textContent = character;
      const bits = result.bits[i];
      if (bits === null) {
        span.title = "not scored";
      } else {
        const [background, ink] = surpriseColour(bits);
        span.style.backgroundColor = background;
        span.style.color = ink;
        span.title = `${bits.toFixed(2)} bits`;
      }
      pieces.append(span);
    });
    $("scored").replaceChildren(pieces);
    const unknown = result.oov_chars ? `; ${result.oov_chars} character(s) the model never saw, not scored` : "";
    $("score-summary").textContent =
      `${result.bits_per_char.toFixed(3)} bits/char over ${result.chars} characters${unknown}`;
    $("scored").dataset.state = "done";
  } catch (error) {
    $("score-summary").textContent = "";
    showError("score-error", error.message);
    $("scored").dataset.state = "failed";
  }
}

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  $("write").hidden = name !== "write";
  $("surprise").hidden = name !== "surprise";
}

document.addEventListener("DOMContentLoaded", () => {
  describeModel();
  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", () => running && running.abort());
  $("score").addEventListener("click", score);
  $("beam").addEventListener("change", () => {
    const beam = $("beam").checked;
    $("width").disabled = !beam;
    for (const id of ["temperature", "top-p", "seed"]) $(id).disabled = beam; // beam search does not sample
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) generate();
  });
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
});
