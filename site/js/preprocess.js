// The classifier's input from face crops, as export/predict.py's normalize_crops makes it.
//
// normalizeCrops(crops, preprocessing) -> {data: Float32Array, dims: [N, 3, S, S]}
//   crops: N images {width: S, height: S, data} (RGB or RGBA, see imaging.js), already at the
//          input size; preprocessing: the manifest's classifier.preprocessing {size, mean, std}.
//   Each value is (pixel / 255 - mean[c]) / std[c], channel-planar (NCHW), RGB order.

const f32 = Math.fround;

export function normalizeCrops(crops, preprocessing) {
  const { size } = preprocessing;
  // numpy computes this in float32 (the crops' dtype wins over Python floats); rounding each step
  // the same way keeps the input identical to Python's. Pixels are whole numbers 0..255, so each
  // channel's 256 values are computed once.
  const mean = preprocessing.mean.map(f32);
  const std = preprocessing.std.map(f32);
  const tables = [0, 1, 2].map((c) => Float32Array.from({ length: 256 }, (_, v) => f32(f32(f32(v / 255) - mean[c]) / std[c])));
  const plane = size * size;
  const data = new Float32Array(crops.length * 3 * plane);
  crops.forEach((crop, n) => {
    if (crop.width !== size || crop.height !== size) {
      throw new Error(`crop ${n} is ${crop.width} x ${crop.height}, the classifier takes ${size} x ${size}`);
    }
    const channels = crop.data.length / plane;
    const [red, green, blue] = [0, 1, 2].map((c) => (n * 3 + c) * plane);
    const pixels = crop.data;
    for (let i = 0, j = 0; i < plane; i++, j += channels) {
      data[red + i] = tables[0][pixels[j]];
      data[green + i] = tables[1][pixels[j + 1]];
      data[blue + i] = tables[2][pixels[j + 2]];
    }
  });
  return { data, dims: [crops.length, 3, size, size] };
}
