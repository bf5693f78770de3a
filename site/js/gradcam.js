// Class probabilities and Grad-CAM heatmaps from the classifier's outputs, as export/classifier.py
// (gradcam_from_outputs, upsample_cam) and export/predict.py (softmax, overlay_heatmap) compute them.
//
// Tensors are {data: Float32Array, dims}, row-major, as onnxruntime returns them.
// - softmax(logits) : [N, K] -> Float32Array [N * K], each row summing to 1.
// - gradcamFromOutputs(activations, weights, dims, classIndex) -> {data, dims: [N, h, w]}
//     activations: Float32Array [N, C, h, w] (a layer's `_activations` output), dims its shape;
//     weights: Float32Array [N, K, C] (the layer's `_weights`). Maps are scaled to [0, 1] per image.
// - upsampleCam(cam, size) : {data, dims: [N, h, w]} -> {data, dims: [N, H, W]}; size is the side of
//     a square or {width, height}.
// - parseColormap(["#rrggbb" x 256]) -> Uint8Array [256 * 3], the manifest's drawing.colormap.
// - overlayHeatmap(crop, cam, colormap, imageWeight) -> RGB image {width, height, data}: the map
//     (Float32Array [H * W], the crop's size) coloured and blended on the crop (RGB or RGBA).
//
// Sums are taken in float64 and rounded to float32 once, where numpy sums in float32: the results
// differ from Python's by float32 rounding (about 1e-7 relative), not more.

const f32 = Math.fround;

export function softmax(logits) {
  const [rows, cols] = logits.dims;
  const out = new Float32Array(rows * cols);
  for (let n = 0; n < rows; n++) {
    const row = logits.data.subarray(n * cols, (n + 1) * cols);
    const max = Math.max(...row);
    let total = 0;
    for (let k = 0; k < cols; k++) total += Math.exp(row[k] - max);
    for (let k = 0; k < cols; k++) out[n * cols + k] = Math.exp(row[k] - max) / total;
  }
  return out;
}

/**
 * pytorch_grad_cam's scale_cam_image on each [h, w] map, in place: x - min, then / (1e-7 + max),
 * in float32 as numpy does it.
 */
function minMaxInPlace(data, maps, plane) {
  const epsilon = f32(1e-7);
  for (let n = 0; n < maps; n++) {
    const map = data.subarray(n * plane, (n + 1) * plane);
    let min = Infinity;
    for (const v of map) min = Math.min(min, v);
    let max = -Infinity;
    for (let i = 0; i < plane; i++) {
      map[i] = f32(map[i] - min);
      max = Math.max(max, map[i]);
    }
    const scale = f32(epsilon + max);
    for (let i = 0; i < plane; i++) map[i] = f32(map[i] / scale);
  }
}

/** ReLU of the class's weighted channel sum, scaled to [0, 1] per image. */
export function gradcamFromOutputs(activations, weights, dims, classIndex) {
  const [count, channels, height, width] = dims;
  const plane = height * width;
  const classes = weights.length / (count * channels);
  const data = new Float32Array(count * plane);
  const sums = new Float64Array(plane);
  for (let n = 0; n < count; n++) {
    sums.fill(0);
    const w = weights.subarray((n * classes + classIndex) * channels, (n * classes + classIndex + 1) * channels);
    for (let c = 0; c < channels; c++) {
      const a = activations.subarray((n * channels + c) * plane, (n * channels + c + 1) * plane);
      for (let i = 0; i < plane; i++) sums[i] += w[c] * a[i];
    }
    for (let i = 0; i < plane; i++) data[n * plane + i] = Math.max(f32(sums[i]), 0);
  }
  minMaxInPlace(data, count, plane);
  return { data, dims: [count, height, width] };
}

/**
 * cv2 INTER_LINEAR weights along one axis (export/classifier.py's _linear_resize_matrix): target
 * pixel i samples source coordinate (i + 0.5) * source / target - 0.5, clamped to the first and
 * last source pixel, from its two neighbours (the same one twice at the clamped edges).
 */
function linearTaps(source, target) {
  const taps = [];
  for (let i = 0; i < target; i++) {
    const position = Math.min(Math.max((i + 0.5) * (source / target) - 0.5, 0), source - 1);
    const left = Math.floor(position);
    const right = Math.min(left + 1, source - 1);
    const fraction = f32(position - left);
    const leftWeight = f32(1 - fraction);
    // The Python matrix adds both weights into one cell when the neighbours coincide.
    taps.push(left === right
      ? { left, right, leftWeight: f32(leftWeight + fraction), rightWeight: 0 }
      : { left, right, leftWeight, rightWeight: fraction });
  }
  return taps;
}

/** Coarse maps -> maps of the given size, bilinear (pixel centres aligned), then min-max scaled again. */
export function upsampleCam(cam, size) {
  const [count, height, width] = cam.dims;
  const outW = typeof size === 'number' ? size : size.width;
  const outH = typeof size === 'number' ? size : size.height;
  const rows = linearTaps(height, outH);
  const cols = linearTaps(width, outW);
  const data = new Float32Array(count * outH * outW);
  const rowMix = new Float64Array(width);
  for (let n = 0; n < count; n++) {
    const map = cam.data.subarray(n * height * width, (n + 1) * height * width);
    for (let y = 0; y < outH; y++) {
      const r = rows[y];
      for (let x = 0; x < width; x++) {
        rowMix[x] = r.leftWeight * map[r.left * width + x] + r.rightWeight * map[r.right * width + x];
      }
      for (let x = 0; x < outW; x++) {
        const c = cols[x];
        data[(n * outH + y) * outW + x] = c.leftWeight * rowMix[c.left] + c.rightWeight * rowMix[c.right];
      }
    }
  }
  minMaxInPlace(data, count, outH * outW);
  return { data, dims: [count, outH, outW] };
}

export function parseColormap(hexColours) {
  const table = new Uint8Array(hexColours.length * 3);
  hexColours.forEach((hex, i) => {
    const match = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
    if (!match) throw new Error(`colormap entry ${i} is not "#rrggbb": ${hex}`);
    for (let c = 0; c < 3; c++) table[i * 3 + c] = parseInt(match[c + 1], 16);
  });
  return table;
}

/**
 * pytorch_grad_cam's show_cam_on_image: the map's colours (entry trunc(255 * value)) blended with
 * the crop, weighted imageWeight for the crop, then rescaled so the brightest value is 255.
 */
export function overlayHeatmap(crop, cam, colormap, imageWeight) {
  const { width, height } = crop;
  const pixels = width * height;
  if (cam.length !== pixels) throw new Error(`map of ${cam.length} values for a ${width} x ${height} crop`);
  const channels = crop.data.length / pixels;
  const heatWeight = f32(1 - imageWeight);
  const cropWeight = f32(imageWeight);
  const blended = new Float32Array(pixels * 3);
  let max = -Infinity;
  for (let i = 0; i < pixels; i++) {
    const entry = Math.trunc(f32(255 * cam[i])) * 3;
    for (let c = 0; c < 3; c++) {
      const heat = f32(colormap[entry + c] / 255);
      const image = f32(crop.data[i * channels + c] / 255);
      const value = f32(f32(heatWeight * heat) + f32(cropWeight * image));
      blended[i * 3 + c] = value;
      max = Math.max(max, value);
    }
  }
  const data = new Uint8ClampedArray(pixels * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.trunc(f32(f32(255 * blended[i]) / max));
  return { width, height, data };
}
