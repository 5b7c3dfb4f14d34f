// The network, one token at a time: what CharRNN.step computes, in JavaScript.
//
// In at step t: a token id, and the state (per layer h, and c for an LSTM).
// Out: the logits (V) of the next token; the state has moved on.
//
// What one layer computes from its input x (layer 0: the token's row of the input table) and its h, c:
//   LSTM  i, f, g, o = σ, σ, tanh, σ of (W_ih x + W_hh h + b);  c' = f*c + i*g;  h' = o*tanh(c')
//   GRU   r, z = σ(W_ir x + W_hr h + b_r), σ(W_iz x + W_hz h + b_z)
//         n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1 - z)*n + z*h
//   RNN   h' = tanh(W_ih x + W_hh h + b)
//
// The weights come as fp32 (charrnn/export/layout.py lists them). Every array the network reads or
// writes lies in one block of memory: a WebAssembly.Memory when the SIMD
// product of matvec.wat can run (it reads only its own memory), else a plain ArrayBuffer and the same
// product in JavaScript. A matrix is (out, in), row-major: a product is `out` dot products, each
// walking one row and the input side by side.
"use strict";

function base64Bytes(base64) {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// out[r] = base[baseAt + r] + w[r, :] · x   for r < rows; w is (rows, cols) row-major. `out` must not be `x`.
// Four running sums, so that the loads and additions of one row overlap.
function matvec(w, rows, cols, x, base, baseAt, out) {
  const tail = cols & ~3;
  for (let r = 0, row = 0; r < rows; r++, row += cols) {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let j = 0; j < tail; j += 4) {
      s0 += w[row + j] * x[j];
      s1 += w[row + j + 1] * x[j + 1];
      s2 += w[row + j + 2] * x[j + 2];
      s3 += w[row + j + 3] * x[j + 3];
    }
    for (let j = tail; j < cols; j++) s0 += w[row + j] * x[j];
    out[r] = base[baseAt + r] + ((s0 + s1) + (s2 + s3));
  }
}

// Memory for `floats` numbers and the product that reads it: {buffer, matvec, simd}.
// wasmBytes: matvec.wasm; where it cannot run (no WebAssembly, no SIMD), JavaScript's matvec.
function kernel(floats, wasmBytes) {
  const bytes = 4 * floats;
  try {
    const pages = Math.max(1, Math.ceil(bytes / 65536));
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const module = new WebAssembly.Module(wasmBytes);
    const simd = new WebAssembly.Instance(module, { env: { memory } }).exports.matvec;
    const product = (w, rows, cols, x, base, baseAt, out) =>
      simd(w.byteOffset, rows, cols, x.byteOffset, base.byteOffset + 4 * baseAt, out.byteOffset);
    return { buffer: memory.buffer, matvec: product, simd: true };
  } catch (e) {
    return { buffer: new ArrayBuffer(bytes), matvec, simd: false };
  }
}

// Hands out consecutive Float32Arrays of one buffer.
class Arena {
  constructor(buffer) {
    this.buffer = buffer;
    this.used = 0; // floats handed out
  }

  // The floats an array of `size` takes: the next array starts 16-byte aligned.
  static padded(size) {
    return size + (-size & 3);
  }

  take(size) {
    const view = new Float32Array(this.buffer, 4 * this.used, size);
    this.used += Arena.padded(size);
    return view;
  }
}

function sigmoid(x) {
  return 1 / (1 + Math.exp(-x));
}

const GATES = { lstm: 4, gru: 3, rnn: 1 };

class Network {
  // config: {cell, layers, hidden, embed, vocab_size}; manifest: [[name, shape], ...] of the weights, whose
  // little-endian fp32 values `bytes` holds in the manifest's order; wasmBytes: matvec.wasm.
  constructor(config, manifest, bytes, wasmBytes) {
    const { cell, layers, hidden: H, embed: E, vocab_size: V } = config;
    this.layerStep = { lstm: this.lstm, gru: this.gru, rnn: this.rnn }[cell];
    this.H = H;
    this.V = V;
    this.G = GATES[cell] * H;
    const sizes = manifest.map(([, shape]) => shape.reduce((a, b) => a * b, 1));
    const scratch = [V * this.G, this.G, this.G, 2 * H, V, ...Array(2 * layers).fill(H)]; // table, buffers, state
    this.kernel = kernel([...sizes, ...scratch].reduce((sum, n) => sum + Arena.padded(n), 0), wasmBytes);
    const arena = new Arena(this.kernel.buffer);
    const tensors = this.place(manifest, sizes, bytes, arena);
    this.layers = [];
    for (let k = 0; k < layers; k++) {
      const get = (part) => tensors[`l${k}.${part}`];
      this.layers.push({ x: get("x"), w: get("w"), wIn: get("w_in"), bHh: get("b_hh") });
    }
    this.head = { w: tensors["head.w"], b: tensors["head.b"] };
    this.table = arena.take(V * this.G); // (V, G)
    this.fillTable(tensors.embedding, E);
    this.gates = arena.take(this.G); // the layer's pre-activations: (G,)
    this.recurrent = arena.take(this.G); // a GRU's W_hh h + b_hh: (G,)
    this.joined = arena.take(2 * H); // cat([x, h]) for layers above 0: (2H,)
    this.logits = arena.take(V);
    this.h = this.layers.map(() => arena.take(H));
    this.c = this.layers.map(() => arena.take(H));
  }

  // The weights as {name: Float32Array} in the arena.
  place(manifest, sizes, bytes, arena) {
    const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (4 * sizes.reduce((a, b) => a + b, 0) !== bytes.length) {
      throw new Error("the weights do not match their manifest");
    }
    const tensors = {};
    let at = 0;
    manifest.forEach(([name], n) => {
      const values = arena.take(sizes[n]);
      for (let i = 0; i < sizes[n]; i++, at += 4) values[i] = data.getFloat32(at, true);
      tensors[name] = values;
    });
    return tensors;
  }

  // Row v = W_ih0 @ embedding[v] + bias: layer 0's input product for token v, looked up instead of computed.
  fillTable(embedding, E) {
    const { wIn, x } = this.layers[0];
    for (let v = 0; v < this.V; v++) {
      this.kernel.matvec(wIn, this.G, E, embedding.subarray(v * E, (v + 1) * E), x, 0, this.table.subarray(v * this.G));
    }
  }

  // The all-zeros state, as a fresh sample starts from.
  reset() {
    this.h.forEach((h) => h.fill(0));
    this.c.forEach((c) => c.fill(0));
  }

  // Read token `id`; the logits (V) of the next one (the same array, overwritten by the next step).
  step(id) {
    for (let k = 0; k < this.layers.length; k++) this.layerStep(k, id);
    const top = this.h[this.layers.length - 1];
    this.kernel.matvec(this.head.w, this.V, this.H, top, this.head.b, 0, this.logits);
    return this.logits;
  }

  // The product every LSTM and RNN layer starts with: gates = x part + W @ (h, or cat([x, h]) above layer 0).
  product(k, id) {
    const { x, w } = this.layers[k];
    const h = this.h[k];
    if (k === 0) {
      this.kernel.matvec(w, this.G, this.H, h, this.table, id * this.G, this.gates);
      return;
    }
    this.joined.set(this.h[k - 1], 0);
    this.joined.set(h, this.H);
    this.kernel.matvec(w, this.G, 2 * this.H, this.joined, x, 0, this.gates);
  }

  lstm(k, id) {
    this.product(k, id);
    const { H, gates } = this;
    const h = this.h[k], c = this.c[k];
    for (let j = 0; j < H; j++) {
      const i = sigmoid(gates[j]), f = sigmoid(gates[H + j]);
      const g = Math.tanh(gates[2 * H + j]), o = sigmoid(gates[3 * H + j]);
      c[j] = f * c[j] + i * g;
      h[j] = o * Math.tanh(c[j]);
    }
  }

  rnn(k, id) {
    this.product(k, id);
    const h = this.h[k];
    for (let j = 0; j < this.H; j++) h[j] = Math.tanh(this.gates[j]);
  }

  gru(k, id) {
    const { x, w, wIn, bHh } = this.layers[k];
    const { H, G, gates, recurrent } = this;
    const h = this.h[k];
    if (k === 0) gates.set(this.table.subarray(id * G, (id + 1) * G));
    else this.kernel.matvec(wIn, G, H, this.h[k - 1], x, 0, gates); // W_ih x + b_ih: (3H,)
    this.kernel.matvec(w, G, H, h, bHh, 0, recurrent); // W_hh h + b_hh: (3H,)
    for (let j = 0; j < H; j++) {
      const r = sigmoid(gates[j] + recurrent[j]);
      const z = sigmoid(gates[H + j] + recurrent[H + j]);
      const n = Math.tanh(gates[2 * H + j] + r * recurrent[2 * H + j]);
      h[j] = n + z * (h[j] - n); // (1 - z) * n + z * h, as torch.lerp writes it
    }
  }
}
