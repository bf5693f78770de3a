// onnxruntime-web session options for the app's graphs, shared by worker.js and the benchmark
// (studies/browser_timing.py), so that what is timed is what the app runs.
//
// sessionOptions(provider, {integerArithmetic}) -> InferenceSession options; integerArithmetic for the webcam's
//   statically quantized graph (export/quantize.py)

// onnxruntime's threads spin between runs by default, waiting for the next one. A webcam step runs the
// face detector's nets many times with the worker's own work in between (pyramid levels, crops), and the
// page redraws at every video frame: spinning threads take the cores from both (masklens/predict.py's
// session_options turns spinning off for the same reason).
const NO_SPINNING = { intra_op: { allow_spinning: '0' } };

export function sessionOptions(provider, { integerArithmetic = false } = {}) {
  return {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3, // errors only: its warnings (which nodes run where) would reach the console as errors
    // Weights stored int8 (DequantizeLinear on initializers, export/weights.py) are decoded once at load
    // instead of on every run, as Python's session_options does; the statically quantized graph keeps its
    // quantize/dequantize pairs, which onnxruntime fuses into integer kernels.
    extra: { session: integerArithmetic ? NO_SPINNING : { ...NO_SPINNING, disable_quant_qdq: '1' } },
  };
}
