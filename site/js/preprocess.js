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
  // the same way keeps the input identical to Python's.
  const mean = preprocessing.mean.map(f32);
  const std = preprocessing.std.map(f32);
  const plane = size * size;
  const data = new Float32Array(crops.length * 3 * plane);
  crops.forEach((crop, n) => {
    if (crop.width !== size || crop.height !== size) {
      throw new Error(`crop ${n} is ${crop.width} x ${crop.height}, the classifier takes ${size} x ${size}`);
    }
    const channels = crop.data.length / plane;
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        data[(n * 3 + c) * plane + i] = f32(f32(f32(crop.data[i * channels + c] / 255) - mean[c]) / std[c]);
      }
    }
  });
  return { data, dims: [crops.length, 3, size, size] };
}
