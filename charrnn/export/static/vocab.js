// The vocabulary in the page: a prompt -> the ids the model reads; ids -> text, as it is written.
//
//   char   one code point per id
//   word   words, numbers, marks and whitespace runs, cut by the regular expression of
//          charrnn/text/wordvocab.py (rewritten below for JavaScript); a token the vocabulary
//          lacks is spelled out by its characters, as `WordVocab.encode` does
//   byte   the prompt's UTF-8 bytes (TextEncoder); the bytes written pass through a streaming
//          TextDecoder, and the Utf8Guard lets only bytes that continue valid UTF-8 be drawn,
//          so the text always decodes (a character left incomplete at the end is held back)
//
// A prompt is read as `prime_ids_for` reads it: after `start` (a line break) unless it begins with
// one, so the model starts from a state it knows. Characters no token spells are skipped, and told.
"use strict";

// Python's classes in a str pattern, per code point: [^\W\d_] is L, Nl and No; \d is Nd; \w is L, N
// and "_"; \s is str.isspace, listed here because JavaScript's \s is another set.
const LETTER = "\\p{L}\\p{Nl}\\p{No}";
const SPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
// wordvocab.WORD_RE: letters with inner apostrophes | digits | one mark | "_" | a whitespace run | anything
const WORD_RE = new RegExp(
  ` ?[${LETTER}]+(?:'[${LETTER}]+)*| ?\\p{Nd}+| ?[^${LETTER}\\p{Nd}_${SPACE}]| ?_|[${SPACE}]+|[^]`, "gu");

class Vocabulary {
  // spec: {kind, start, pieces (char, word: the text of each id), utf8_next (byte: the automaton)}
  constructor(spec) {
    this.kind = spec.kind;
    this.start = spec.start;
    this.pieces = spec.pieces;
    this.utf8Next = spec.utf8_next;
    this.index = new Map(spec.pieces.map((piece, id) => [piece, id]));
  }

  // Can the one code point `c` be encoded? (Bytes spell any character but a lone surrogate.)
  known(c) {
    if (this.kind === "byte") return !(c.length === 1 && c >= "\ud800" && c <= "\udfff");
    return this.index.has(c);
  }

  // Text made of known characters -> ids.
  encode(text) {
    if (this.kind === "byte") return Array.from(new TextEncoder().encode(text));
    if (this.kind === "char") return Array.from(text, (c) => this.index.get(c));
    const ids = [];
    for (const [token] of text.matchAll(WORD_RE)) {
      const id = this.index.get(token);
      if (id !== undefined) ids.push(id);
      else for (const c of token) ids.push(this.index.get(c)); // not in the vocabulary: spelled out
    }
    return ids;
  }

  // A prompt -> {ids: what the model reads before it writes, skipped: the distinct unknown characters}.
  encodePrompt(prompt) {
    const text = prompt.startsWith(this.start) ? prompt : this.start + prompt;
    const chars = Array.from(text);
    const skipped = [...new Set(chars.filter((c) => !this.known(c)))];
    const ids = this.encode(chars.filter((c) => this.known(c)).join(""));
    return { ids: ids.length ? ids : this.encode(this.start), skipped };
  }

  // A function of each written id -> the text it completes ("" while a byte model's character is incomplete).
  decoder() {
    if (this.kind !== "byte") return (id) => this.pieces[id];
    const decoder = new TextDecoder("utf-8");
    return (id) => decoder.decode(Uint8Array.of(id), { stream: true });
  }

  // What constrains the next id: a byte model's Utf8Guard, or null.
  guard() {
    return this.kind === "byte" ? new Utf8Guard(this.utf8Next) : null;
  }
}
