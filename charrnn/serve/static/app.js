// charrnn playground: stream a continuation, or colour a text by the model's surprise.
//
// Everything shown comes from the user, the model or the server (the model card's prompt and
// vocabulary included), so it is put into the page as text only (textContent, Text nodes, the
// title and placeholder attributes), never parsed as HTML: a "<script>" in a prompt or in what
// the model writes is shown as those characters.
"use strict";

const $ = (id) => document.getElementById(id);
let running = null; // the AbortController of the request being streamed
let unit = "characters"; // what the model's tokens are: characters, word tokens or bytes (the card says)

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

// A server without the card's newer fields: its vocabulary's first capital letter (most texts start
// their lines with one), else nothing.
function firstCapital(vocab) {
  return Array.from(vocab || []).find((c) => c.length === 1 && c !== c.toLowerCase()) || "";
}

async function describeModel() {
  try {
    const card = (await (await fetch("/v1/models")).json()).data[0];
    const c = card.charrnn || {};
    unit = c.unit || "characters";
    const prompt = typeof c.prompt === "string" ? c.prompt : firstCapital(c.vocab);
    $("model").textContent = `${card.id} · ${c.cell} ${c.layers}×${c.hidden} · vocabulary: ${c.vocab_size} ${unit}`;
    $("length-unit").textContent = `(${unit})`;
    $("prompt").placeholder = prompt || "(empty: a fresh text)";
    if (!$("prompt").value) $("prompt").value = prompt; // offered, not forced: the person may clear it
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

// "\n", "\t" and "\\" typed in a field -> line break, tab, backslash (as `charrnn sample --separator` reads them).
function unescape(text) {
  return text.replace(/\\\\/g, "\0").replace(/\\n/g, "\n").replace(/\\t/g, "\t").replace(/\0/g, "\\");
}

// The stop strings: one a line of the stop field, blank lines left out.
function stopStrings() {
  return $("stop").value.split("\n").filter((line) => line !== "").map(unescape);
}

function completionRequest() {
  const prompt = $("prompt").value || "\n"; // an empty prompt: start a fresh text
  const body = { prompt, max_tokens: number("length"), stream: true, stream_options: { include_usage: true } };
  const stop = stopStrings();
  if (stop.length) body.stop = stop;
  if ($("beam").checked) {
    body.width = number("width");
    body.top = number("top");
    body.no_repeat = number("no-repeat");
  } else {
    body.temperature = number("temperature");
    body.top_k = number("top-k");
    body.top_p = number("top-p");
    body.n = number("n");
    if ($("seed").value !== "") body.seed = number("seed");
  }
  return body;
}

function setRunning(controller, status) {
  running = controller;
  $("generate").disabled = !!controller;
  $("stop-button").disabled = !controller;
  $("status").textContent = status;
}

// One box per choice (n samples, or the top beams), side by side where the page is wide enough; each
// holds the prompt and a Text node the stream appends to.
function choiceBoxes(count, prompt) {
  const boxes = [];
  for (let i = 0; i < count; i++) {
    const box = document.createElement("div");
    box.className = "choice";
    const caption = document.createElement("div");
    caption.className = "caption muted";
    caption.hidden = count === 1;
    caption.textContent = `choice ${i + 1}`;
    const pre = document.createElement("pre");
    const shown = document.createElement("span");
    shown.className = "prompt";
    shown.textContent = prompt;
    const text = document.createElement("span");
    text.className = "text";
    const node = document.createTextNode("");
    text.append(node);
    pre.append(shown, text);
    box.append(caption, pre);
    boxes.push({ box, caption, node, written: 0, reason: "" });
  }
  $("output").replaceChildren(...boxes.map((b) => b.box));
  return boxes;
}

const ENDED = { stop: "ended at a stop string", length: "reached the length" };

// What the status line says once a text is written: tokens in the model's unit (the usage the server
// counted; characters too where a token is not one), how long, and why a single text ended.
function summary(boxes, usage, seconds) {
  const chars = boxes.reduce((sum, b) => sum + b.written, 0);
  const tokens = usage ? usage.completion_tokens : chars;
  const amount = unit === "characters" || !usage ? `${tokens} ${unit}` : `${tokens} ${unit} (${chars} characters)`;
  if (boxes.length > 1) return `${boxes.length} texts, ${amount} in all, in ${seconds} s`;
  return `${amount} in ${seconds} s${boxes[0].reason === "stop" ? ", stopped at the stop string" : ""}`;
}

async function generate() {
  if (running) running.abort();
  showError("error", "");
  const body = completionRequest();
  const output = $("output");
  const boxes = choiceBoxes(body.width ? body.top || 1 : body.n || 1, body.prompt === "\n" ? "" : body.prompt);
  output.dataset.state = "running";
  const controller = new AbortController();
  setRunning(controller, "writing…");
  const started = performance.now();
  let usage = null;
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
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        const b = boxes[choice.index];
        if (!b) continue;
        b.node.appendData(choice.text);
        b.written += [...choice.text].length;
        if (choice.finish_reason) {
          b.reason = choice.finish_reason;
          b.caption.textContent = `choice ${choice.index + 1} · ${ENDED[b.reason] || b.reason}`;
          b.box.dataset.finish = b.reason;
        }
      }
      $("status").textContent = `${boxes.reduce((sum, b) => sum + b.written, 0)} characters…`;
    }
    setRunning(null, summary(boxes, usage, ((performance.now() - started) / 1000).toFixed(2)));
    output.dataset.state = "done";
  } catch (error) {
    const stopped = error.name === "AbortError";
    const written = boxes.reduce((sum, b) => sum + b.written, 0);
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
  choiceBoxes(1, ""); // an empty box where the text will come
  $("generate").addEventListener("click", generate);
  $("stop-button").addEventListener("click", () => running && running.abort());
  $("score").addEventListener("click", score);
  $("beam").addEventListener("change", () => {
    const beam = $("beam").checked;
    $("beam-fields").disabled = !beam;
    $("sampling-fields").disabled = beam; // beam search does not sample
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) generate();
  });
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
});
