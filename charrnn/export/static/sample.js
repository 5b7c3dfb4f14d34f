// Choosing the next token from the logits, as charrnn.generation.sampling does:
//
//   temperature 0     the most likely token (argmax; the first of equals), as below 1e-30
//   otherwise         logits / temperature -> keep the top k (0: all) -> keep the top-p nucleus (the
//                     smallest set of most likely tokens whose probabilities reach p) -> one draw
//
// The draw reads a seeded generator (mulberry32), so a seed gives the same text every time in any
// browser; it is not torch's generator, so a seed gives other text than `charrnn sample --seed`.
// A byte model passes `allowed` (Utf8Guard): the bytes that may not come next are never chosen.
"use strict";

// A small seeded generator: 32 bits of state, uniform numbers in [0, 1).
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function argmax(z) {
  let best = 0;
  for (let v = 1; v < z.length; v++) if (z[v] > z[best]) best = v;
  return best;
}

// Mask with -Infinity every score below the k-th largest (ties with it are kept, as in torch).
function keepTopK(z, k) {
  const kth = Float64Array.from(z).sort()[z.length - k];
  for (let v = 0; v < z.length; v++) if (z[v] < kth) z[v] = -Infinity;
}

// Mask every token outside the nucleus: sorted by score, a token is dropped once the ones before it reach p.
function keepTopP(z, p) {
  const order = Array.from(z.keys()).sort((a, b) => z[b] - z[a]);
  const top = z[order[0]];
  let total = 0;
  for (const v of order) total += Math.exp(z[v] - top);
  let before = 0;
  for (const v of order) {
    const prob = Math.exp(z[v] - top) / total;
    if (before >= p) z[v] = -Infinity;
    before += prob;
  }
}

// One draw from softmax(z).
function draw(z, random) {
  const top = z[argmax(z)];
  let total = 0;
  for (let v = 0; v < z.length; v++) total += Math.exp(z[v] - top);
  let u = random() * total;
  let last = 0;
  for (let v = 0; v < z.length; v++) {
    const weight = Math.exp(z[v] - top);
    if (weight === 0) continue;
    last = v;
    u -= weight;
    if (u < 0) return v;
  }
  return last; // rounding left a sliver of u: the last possible token
}

// A temperature this small draws what greedy decoding chooses (charrnn.generation.sampling.GREEDY_BELOW): logits
// divided by it would overflow to Infinity and leave no number to draw from.
const GREEDY_BELOW = 1e-30;

// logits (V) -> the next id. settings: {temperature, topK, topP}; allowed: null or a 0/1 array (V).
function pick(logits, settings, random, allowed) {
  const { temperature, topK, topP } = settings;
  const z = new Float64Array(logits.length);
  const greedy = temperature < GREEDY_BELOW;
  const scale = greedy ? 1 : temperature;
  for (let v = 0; v < z.length; v++) z[v] = allowed && !allowed[v] ? -Infinity : logits[v] / scale;
  if (greedy) return argmax(z);
  if (topK && topK < z.length) keepTopK(z, topK);
  if (topP < 1) keepTopP(z, topP);
  return draw(z, random);
}

// Where a byte stream is inside a UTF-8 character, and which bytes may come next (bytevocab.Utf8Guard).
// next: the automaton's (8, 256) table, -1 where a byte is not allowed (exported from bytevocab.NEXT).
class Utf8Guard {
  constructor(next) {
    this.next = next;
    this.rows = next.map((row) => Uint8Array.from(row, (to) => (to >= 0 ? 1 : 0)));
    this.state = 0; // between characters
  }

  allowed() {
    return this.rows[this.state];
  }

  advance(byte) {
    this.state = this.next[this.state][byte];
  }
}
