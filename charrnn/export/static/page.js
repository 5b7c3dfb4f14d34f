// The page: read the model from this file, then write text as it is generated.
//
// Nothing is fetched or sent: the weights and vocabulary are in the file (script blocks of type
// application/json and text/plain, never run). What the user typed and what the model writes is put
// into the page as text only (textContent, Text nodes, input values), never parsed as HTML: a
// "<script>" in a prompt or in generated text shows as those characters.
//
// Generating runs in slices of SLICE_MS, then yields to the browser (a MessageChannel message: a task
// with no timer's minimum delay), so the text appears as it is written and Stop is heard at once.
"use strict";

const SLICE_MS = 12;
const $ = (id) => document.getElementById(id);
let model = null; // {spec, net, vocab} once loaded
let running = null; // {stop: false} while generating

function nextTask() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

// A character as a person can read it in a note: printable as itself, the rest as U+XXXX.
function shown(c) {
  const code = c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
  return /^[\p{L}\p{N}\p{P}\p{S}]$/u.test(c) ? `"${c}"` : `U+${code}`;
}

// The form's settings, checked: {temperature, topK, topP, length, seed}, or throws a message.
function settings() {
  const read = (id) => ($(id).value.trim() === "" ? NaN : Number($(id).value));
  const s = { temperature: read("temperature"), topK: read("top-k"), topP: read("top-p"), length: read("length") };
  const max = model.spec.limits;
  if (!(s.temperature >= 0 && s.temperature <= max.temperature)) {
    throw new Error(`temperature must be a number from 0 (greedy) to ${max.temperature}`);
  }
  if (!(Number.isInteger(s.topK) && s.topK >= 0)) throw new Error("top-k must be a whole number ≥ 0 (0 = off)");
  if (!(s.topP > 0 && s.topP <= 1)) throw new Error("top-p must be in (0, 1]");
  if (!(Number.isInteger(s.length) && s.length >= 1 && s.length <= max.length)) {
    throw new Error(`length must be a whole number from 1 to ${max.length}`);
  }
  s.seed = $("seed").value.trim() === "" ? crypto.getRandomValues(new Uint32Array(1))[0] : read("seed");
  if (!(Number.isInteger(s.seed) && s.seed >= 0 && s.seed < 2 ** 32)) throw new Error("seed must be 0 to 4294967295");
  return s;
}

// The work of one sample, as a generator: it yields the text of each step ("" while reading the prompt).
// progress.written counts the tokens written so far.
function* writing(ids, s, progress) {
  const { net, vocab } = model;
  net.reset();
  let logits = null;
  for (const id of ids) {
    logits = net.step(id);
    yield "";
  }
  const decode = vocab.decoder();
  const guard = vocab.guard();
  const random = mulberry32(s.seed);
  for (let i = 0; i < s.length; i++) {
    const id = pick(logits, s, random, guard && guard.allowed());
    if (guard) guard.advance(id);
    progress.written++;
    yield decode(id);
    if (i + 1 < s.length) logits = net.step(id);
  }
}

// Run `work` in slices, appending its text to the Text node `text`, until it ends or `run.stop`.
async function stream(work, text, run) {
  for (let done = false; !done && !run.stop;) {
    const until = performance.now() + SLICE_MS;
    let piece = "";
    do {
      const next = work.next();
      done = next.done;
      if (!done) piece += next.value;
    } while (!done && performance.now() < until);
    text.appendData(piece);
    await nextTask();
  }
}

async function generate() {
  let s;
  try {
    s = settings();
  } catch (e) {
    showError(e.message);
    return;
  }
  showError("");
  const prompt = $("prompt").value;
  const { ids, skipped } = model.vocab.encodePrompt(prompt);
  $("note").hidden = !skipped.length;
  const unknown = skipped.map(shown).join(" ");
  $("note").textContent = skipped.length ? `Skipped, not in the model's vocabulary: ${unknown}` : "";
  $("output-prompt").textContent = prompt;
  const text = document.createTextNode("");
  $("output-text").replaceChildren(text);
  running = { stop: false };
  $("generate").textContent = "Stop";
  $("output").dataset.state = "running";
  $("status").textContent = "writing…";
  const progress = { written: 0 };
  const t0 = performance.now();
  let failed = false;
  try {
    await stream(writing(ids, s, progress), text, running);
  } catch (e) {
    showError(`Writing failed: ${e.message}`);
    failed = true;
  }
  finish(progress.written, performance.now() - t0, s.seed, failed);
}

function finish(written, ms, seed, failed) {
  const { unit } = model.spec;
  const output = $("output");
  output.dataset.state = failed ? "failed" : running.stop ? "stopped" : "done";
  output.dataset.tokens = written;
  output.dataset.ms = ms.toFixed(1);
  const chars = Array.from($("output-text").textContent).length;
  const tokens = unit === "characters" ? "" : `${written.toLocaleString("en")} ${unit}, `;
  const rate = Math.round((1000 * chars) / ms).toLocaleString("en");
  $("status").textContent = `${tokens}${chars.toLocaleString("en")} characters in ${(ms / 1000).toFixed(2)} s ` +
    `(${rate} characters/s) · seed ${seed}${running.stop ? " · stopped" : ""}`;
  running = null;
  $("generate").textContent = "Generate";
}

function toggle() {
  if (running) running.stop = true;
  else generate();
}

function load() {
  const spec = JSON.parse($("model").textContent);
  const weights = base64Bytes($("weights").textContent);
  const net = new Network(spec.config, spec.tensors, weights, base64Bytes($("kernel").textContent));
  model = { spec, net, vocab: new Vocabulary(spec.vocab) };
  document.title = `${spec.name} · charrnn`;
  $("name").textContent = spec.name;
  $("facts").textContent = spec.facts;
  $("length-unit").textContent = `(${spec.unit})`;
  $("prompt").value = spec.prompt;
  $("generate").disabled = false;
  $("generate").addEventListener("click", toggle);
  document.body.dataset.state = "ready";
}

nextTask().then(() => { // a task later: the browser may show the page ("reading the weights…") first
  try {
    load();
  } catch (e) {
    showError(`The model could not be read: ${e.message}`);
    document.body.dataset.state = "failed";
  }
});
