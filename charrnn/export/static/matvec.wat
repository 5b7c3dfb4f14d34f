;; The page's matrix-vector product in WebAssembly, four lanes at a time (SIMD): ~5 times the
;; speed of the same loop in JavaScript, which static/step.js falls back to where WebAssembly or
;; its SIMD instructions are missing.
;;
;;   out[r] = base[r] + w[r, :] · x    for r < rows
;;
;; w is (rows, cols) fp32, row-major; w, x, base and out are byte addresses in the imported memory
;; (any alignment). Each row is summed in four fp32 lanes, the lanes added, then the last cols % 4
;; columns one at a time: the same sums as torch's fp32 product, in another order (they agree to rounding).
;;
;; matvec.wasm beside this file is this text assembled (WABT's wat2wasm, or wasmtime's):
;;   python -c "import wasmtime; open('matvec.wasm', 'wb').write(wasmtime.wat2wasm(open('matvec.wat').read()))"
(module
  (import "env" "memory" (memory 1))
  (func (export "matvec")
    (param $w i32) (param $rows i32) (param $cols i32) (param $x i32) (param $base i32) (param $out i32)
    (local $xi i32) (local $vecEnd i32) (local $rowEnd i32) (local $acc v128) (local $sum f32)
    (block $done
      (loop $row
        (br_if $done (i32.eqz (local.get $rows)))
        (local.set $acc (v128.const i32x4 0 0 0 0))
        (local.set $xi (local.get $x))
        (local.set $rowEnd (i32.add (local.get $w) (i32.shl (local.get $cols) (i32.const 2))))
        (local.set $vecEnd (i32.add (local.get $w) (i32.shl (i32.and (local.get $cols) (i32.const -4)) (i32.const 2))))
        ;; four columns at a time: acc += w[r, j:j+4] * x[j:j+4]
        (block $vecDone
          (loop $vec
            (br_if $vecDone (i32.ge_u (local.get $w) (local.get $vecEnd)))
            (local.set $acc (f32x4.add (local.get $acc)
              (f32x4.mul (v128.load (local.get $w)) (v128.load (local.get $xi)))))
            (local.set $w (i32.add (local.get $w) (i32.const 16)))
            (local.set $xi (i32.add (local.get $xi) (i32.const 16)))
            (br $vec)))
        (local.set $sum (f32.add
          (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
          (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))
        ;; the last cols % 4 columns
        (block $tailDone
          (loop $tail
            (br_if $tailDone (i32.ge_u (local.get $w) (local.get $rowEnd)))
            (local.set $sum (f32.add (local.get $sum) (f32.mul (f32.load (local.get $w)) (f32.load (local.get $xi)))))
            (local.set $w (i32.add (local.get $w) (i32.const 4)))
            (local.set $xi (i32.add (local.get $xi) (i32.const 4)))
            (br $tail)))
        (f32.store (local.get $out) (f32.add (f32.load (local.get $base)) (local.get $sum)))
        (local.set $base (i32.add (local.get $base) (i32.const 4)))
        (local.set $out (i32.add (local.get $out) (i32.const 4)))
        (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
        (br $row)))))
