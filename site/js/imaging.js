// Image operations of the Python pipeline, reproduced to the byte where Python uses Pillow.
//
// An image is `{width, height, data}` with `data` a Uint8ClampedArray of interleaved 8-bit
// channels, row-major: 4 channels (RGBA, canvas ImageData's layout) or 3 (RGB). Functions returning
// an image keep the channel count of their input unless they say otherwise; every channel,
// alpha included, is treated alike (the pipeline drops alpha first, with toRGB).
// A planar image is `{data: Float32Array, dims: [C, H, W]}`, the layout the nets take.
//
// - resizeBilinear(image, width, height, box?): Pillow's Image.resize(..., BILINEAR).
// - reduce(image, factorX, factorY): Pillow's Image.reduce.
// - thumbnailSize / thumbnail(image, maxSide): Pillow's Image.thumbnail((maxSide, maxSide), BILINEAR).
// - cropBoxForFace(box, framing), cropFace(rgb, box, framing, outSize): export/framing.py.
// - toPlanar(rgb) and areaResize(planar, outH, outW): export/mtcnn.py's image layout and area_resize.

const f32 = Math.fround;

// Pillow's fixed-point resampling: coefficients scaled to 22 bits, leaving 8 for the pixel value
// and 2 for overshoot, in a 32-bit accumulator (Resample.c, PRECISION_BITS).
const PRECISION_BITS = 22;
const PRECISION_ONE = 1 << PRECISION_BITS;
const PRECISION_HALF = 1 << (PRECISION_BITS - 1);

export function channelsOf(image) {
  const channels = image.data.length / (image.width * image.height);
  if (channels !== 3 && channels !== 4) {
    throw new Error(`expected 3 or 4 channels, got ${image.width} x ${image.height} with ${image.data.length} values`);
  }
  return channels;
}

export function toRGB(image) {
  if (channelsOf(image) === 3) return image;
  const pixels = image.width * image.height;
  const data = new Uint8ClampedArray(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    data[i * 3] = image.data[i * 4];
    data[i * 3 + 1] = image.data[i * 4 + 1];
    data[i * 3 + 2] = image.data[i * 4 + 2];
  }
  return { width: image.width, height: image.height, data };
}

/** RGB or RGBA -> RGBA with opaque alpha, for canvas putImageData. */
export function toRGBA(image) {
  if (channelsOf(image) === 4) return image;
  const pixels = image.width * image.height;
  const data = new Uint8ClampedArray(pixels * 4);
  for (let i = 0; i < pixels; i++) {
    data[i * 4] = image.data[i * 3];
    data[i * 4 + 1] = image.data[i * 3 + 1];
    data[i * 4 + 2] = image.data[i * 3 + 2];
    data[i * 4 + 3] = 255;
  }
  return { width: image.width, height: image.height, data };
}

// --- Pillow resampling -------------------------------------------------------------------------

function bilinearFilter(x) {
  const a = Math.abs(x);
  return a < 1 ? 1 - a : 0;
}

/**
 * Pillow's precompute_coeffs for BILINEAR along one axis, with normalize_coeffs_8bpc applied.
 * in0 and in1 are the source span, float32 as Pillow's C code receives the box. When shrinking,
 * the filter is stretched by the scale, which is what antialiases.
 */
function precomputeCoeffs(inSize, in0, in1, outSize) {
  const scale = f32(in1 - in0) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const inverseScale = 1 / filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const coeffs = new Int32Array(outSize * ksize);
  const weights = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const count = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let x = 0; x < count; x++) {
      weights[x] = bilinearFilter((x + xmin - center + 0.5) * inverseScale);
      total += weights[x];
    }
    // Taps whose coefficient rounds to 0 add nothing to Pillow's sums: left out, they cost no time.
    let first = 0;
    let last = count;
    const fixed = (x) => Math.trunc(0.5 + (total !== 0 ? weights[x] / total : weights[x]) * PRECISION_ONE);
    while (first < last && fixed(first) === 0) first++;
    while (last > first && fixed(last - 1) === 0) last--;
    for (let x = first; x < last; x++) coeffs[xx * ksize + x - first] = fixed(x);
    bounds[xx * 2] = xmin + first;
    bounds[xx * 2 + 1] = last - first;
  }
  return { ksize, bounds, coeffs };
}

function clip8(sum) {
  const v = sum >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// The two passes below are Pillow's ImagingResampleHorizontal/Vertical_8bpc. They are the hot loops of
// a webcam step (the frame's thumbnail for the detector, every face's crop), so the RGB case keeps its
// three sums in locals and the vertical pass adds one source row at a time into a row of sums, all in
// 32-bit integer arithmetic (no sum reaches 2**31: 255 * 2**22 plus rounding); the sums are the same
// integers as Pillow's, so the pixels are too.

function resampleHorizontal(src, width, channels, rowFirst, rows, outWidth, { ksize, bounds, coeffs }) {
  const out = new Uint8ClampedArray(outWidth * rows * channels);
  for (let y = 0; y < rows; y++) {
    const line = (y + rowFirst) * width * channels;
    const outLine = y * outWidth * channels;
    for (let xx = 0; xx < outWidth; xx++) {
      const count = bounds[xx * 2 + 1];
      const k = xx * ksize;
      let p = line + bounds[xx * 2] * channels;
      const o = outLine + xx * channels;
      if (channels === 3) {
        let s0 = PRECISION_HALF;
        let s1 = PRECISION_HALF;
        let s2 = PRECISION_HALF;
        for (let x = 0; x < count; x++, p += 3) {
          const w = coeffs[k + x];
          s0 = (s0 + Math.imul(src[p], w)) | 0;
          s1 = (s1 + Math.imul(src[p + 1], w)) | 0;
          s2 = (s2 + Math.imul(src[p + 2], w)) | 0;
        }
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      } else {
        for (let c = 0; c < channels; c++) {
          let sum = PRECISION_HALF;
          for (let x = 0; x < count; x++) sum += src[p + x * channels + c] * coeffs[k + x];
          out[o + c] = clip8(sum);
        }
      }
    }
  }
  return out;
}

function resampleVertical(src, width, channels, outHeight, rowShift, { ksize, bounds, coeffs }) {
  const out = new Uint8ClampedArray(width * outHeight * channels);
  const stride = width * channels;
  const sums = new Int32Array(stride);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2] - rowShift;
    const count = bounds[yy * 2 + 1];
    const k = yy * ksize;
    sums.fill(PRECISION_HALF);
    for (let y = 0; y < count; y++) {
      const w = coeffs[k + y];
      const row = (y + ymin) * stride;
      for (let i = 0; i < stride; i++) sums[i] = (sums[i] + Math.imul(src[row + i], w)) | 0;
    }
    const to = yy * stride;
    for (let i = 0; i < stride; i++) out[to + i] = clip8(sums[i]);
  }
  return out;
}

/**
 * Pillow's Image.resize((width, height), Resampling.BILINEAR, box) for 8-bit images (Pillow 13's
 * Resample.c): two separable passes, each rounding to 8 bits, so their order changes the result.
 * Pillow runs the vertical pass first when the height loses more than twice as many pixels as
 * the width, otherwise the horizontal one first (over only the rows the vertical pass reads).
 * A pass whose size and box leave its axis unchanged is skipped.
 * box = [x0, y0, x1, y1] (floats allowed) is the source region; default the whole image.
 */
export function resizeBilinear(image, width, height, box = [0, 0, image.width, image.height]) {
  const channels = channelsOf(image);
  const [x0, y0, x1, y1] = box.map(f32);
  const needHorizontal = width !== image.width || x0 !== 0 || x1 !== width;
  const needVertical = height !== image.height || y0 !== 0 || y1 !== height;
  if (!needHorizontal && !needVertical) {
    return { width, height, data: new Uint8ClampedArray(image.data) };
  }
  const shrinkY = image.height - height;
  const verticalFirst = shrinkY > 0 && shrinkY > (image.width - width) * 2;
  const vertical = precomputeCoeffs(image.height, y0, y1, height);
  const horizontal = needHorizontal ? precomputeCoeffs(image.width, x0, x1, width) : null;
  let { data } = image;
  if (verticalFirst) {
    data = resampleVertical(data, image.width, channels, height, 0, vertical);
    if (needHorizontal) data = resampleHorizontal(data, image.width, channels, 0, height, width, horizontal);
    return { width, height, data };
  }
  let rowShift = 0;
  if (needHorizontal) {
    const first = vertical.bounds[0];
    const last = vertical.bounds[height * 2 - 2] + vertical.bounds[height * 2 - 1];
    data = resampleHorizontal(data, image.width, channels, first, last - first, width, horizontal);
    rowShift = first;
  }
  if (needVertical) data = resampleVertical(data, width, channels, height, rowShift, vertical);
  return { width, height, data };
}

/**
 * Pillow's integer reduce multiplier (Reduce.c division_UINT32): 2**32 / (256 * count), computed
 * in float32 and truncated, so the mean of `count` pixels is ((sum + count / 2) * m) >> 24.
 */
function reduceMultiplier(count) {
  return Math.trunc(f32(f32(2 ** 32) / f32(256 * count)));
}

/**
 * Pillow's Image.reduce((factorX, factorY)): the rounded mean of each factorX x factorY block;
 * the last column and row average the partial blocks (output size rounded up).
 */
export function reduce(image, factorX, factorY) {
  const channels = channelsOf(image);
  const { width, height } = image;
  const outWidth = Math.ceil(width / factorX);
  const outHeight = Math.ceil(height / factorY);
  const data = new Uint8ClampedArray(outWidth * outHeight * channels);
  const sums = new Float64Array(channels);
  for (let oy = 0; oy < outHeight; oy++) {
    const yStart = oy * factorY;
    const yEnd = Math.min(yStart + factorY, height);
    for (let ox = 0; ox < outWidth; ox++) {
      const xStart = ox * factorX;
      const xEnd = Math.min(xStart + factorX, width);
      const count = (yEnd - yStart) * (xEnd - xStart);
      sums.fill(Math.floor(count / 2));
      for (let y = yStart; y < yEnd; y++) {
        for (let x = xStart; x < xEnd; x++) {
          const p = (y * width + x) * channels;
          for (let c = 0; c < channels; c++) sums[c] += image.data[p + c];
        }
      }
      const multiplier = reduceMultiplier(count);
      for (let c = 0; c < channels; c++) {
        data[(oy * outWidth + ox) * channels + c] = Math.floor((sums[c] * multiplier) / 2 ** 24);
      }
    }
  }
  return { width: outWidth, height: outHeight, data };
}

/**
 * The size Pillow's thumbnail((maxWidth, maxHeight)) gives: the aspect ratio kept, each side
 * rounded to the neighbouring integer that keeps the ratio closest; null if the image already fits.
 */
export function thumbnailSize(width, height, maxWidth, maxHeight = maxWidth) {
  if (maxWidth >= width && maxHeight >= height) return null;
  const aspect = width / height;
  const roundAspect = (value, error) => {
    const low = Math.floor(value);
    const high = Math.ceil(value);
    return Math.max(error(high) < error(low) ? high : low, 1);
  };
  if (maxWidth / maxHeight >= aspect) {
    return [roundAspect(maxHeight * aspect, (n) => Math.abs(aspect - n / maxHeight)), maxHeight];
  }
  return [maxWidth, roundAspect(maxWidth / aspect, (n) => (n === 0 ? 0 : Math.abs(aspect - maxWidth / n)))];
}

/**
 * Pillow's Image.thumbnail((maxSide, maxSide), Resampling.BILINEAR) on a decoded image: with its
 * default reducing_gap of 2, a shrink by 4 or more first reduces by whole factors, then resizes
 * the rest from the matching fractional box. Returns the image itself when it already fits.
 */
export function thumbnail(image, maxSide) {
  const size = thumbnailSize(image.width, image.height, maxSide);
  if (size === null) return image;
  const [width, height] = size;
  const factorX = Math.trunc(image.width / width / 2) || 1;
  const factorY = Math.trunc(image.height / height / 2) || 1;
  if (factorX === 1 && factorY === 1) return resizeBilinear(image, width, height);
  return resizeBilinear(reduce(image, factorX, factorY), width, height,
    [0, 0, image.width / factorX, image.height / factorY]);
}

// --- Face crops (export/framing.py) --------------------------------------------------------------

/** Python's round() on a number: halves go to the even neighbour. */
export function roundHalfEven(value) {
  const rounded = Math.round(value);
  return Math.abs(value % 1) === 0.5 ? 2 * Math.round(value / 2) : rounded;
}

/**
 * crop_box_for_face: face box [x1, y1, x2, y2] -> the square crop [x1, y1, x2, y2], which may
 * reach past the image. framing = {center_dx, center_dy, side} in face sizes. The detector's
 * boxes are float32 and numpy keeps float32 when mixing them with Python floats, so every step
 * here rounds to float32 as Python does.
 */
export function cropBoxForFace(box, framing) {
  const [x1, y1, x2, y2] = box.map(f32);
  const size = f32(f32(f32(x2 - x1) + f32(y2 - y1)) / 2);
  const cx = f32(f32(f32(x1 + x2) / 2) + f32(f32(framing.center_dx) * size));
  const cy = f32(f32(f32(y1 + y2) / 2) + f32(f32(framing.center_dy) * size));
  const half = f32(f32(f32(framing.side) * size) / 2);
  return [f32(cx - half), f32(cy - half), f32(cx + half), f32(cy + half)];
}

/**
 * crop_face: the framed crop of a face, outSize x outSize. The crop box is rounded to whole
 * pixels, pixels past the image repeat its edge (clamped indices), and Pillow's bilinear resize
 * brings it to outSize: the framing and filter the classifier was trained with.
 */
export function cropFace(image, box, framing, outSize) {
  const channels = channelsOf(image);
  const [x1, y1, x2] = cropBoxForFace(box, framing);
  const side = Math.max(1, roundHalfEven(f32(x2 - x1)));
  const left = roundHalfEven(x1);
  const top = roundHalfEven(y1);
  const clamp = (v, min, max) => (v < min ? min : v > max ? max : v);
  const data = new Uint8ClampedArray(side * side * channels);
  // Output columns [inside, outside) fall in the photo and are copied a row at a time (a webcam step
  // crops every tracked face); those left and right of them repeat the photo's edge pixels.
  const inside = clamp(-left, 0, side);
  const outside = clamp(image.width - left, inside, side);
  const repeat = (from, to, start, end) => {
    for (let x = start; x < end; x++) {
      for (let c = 0; c < channels; c++) data[to + x * channels + c] = image.data[from + c];
    }
  };
  for (let y = 0; y < side; y++) {
    const row = clamp(top + y, 0, image.height - 1) * image.width;
    const to = y * side * channels;
    repeat(row * channels, to, 0, inside);
    data.set(image.data.subarray((row + left + inside) * channels, (row + left + outside) * channels), to + inside * channels);
    repeat((row + image.width - 1) * channels, to, outside, side);
  }
  return resizeBilinear({ width: side, height: side, data }, outSize, outSize);
}

// --- Planar float images (export/mtcnn.py) -------------------------------------------------------

/** RGB(A) image -> planar float32 RGB [3, H, W] of the 0..255 values. */
export function toPlanar(image) {
  const channels = channelsOf(image);
  const { width, height, data: src } = image;
  const plane = width * height;
  const data = new Float32Array(3 * plane);
  for (let i = 0, j = 0; i < plane; i++, j += channels) {
    data[i] = src[j];
    data[plane + i] = src[j + 1];
    data[2 * plane + i] = src[j + 2];
  }
  return { data, dims: [3, height, width] };
}

// torch's adaptive average pooling windows along one axis: [floor(i * in / out), ceil((i + 1) * in / out)).
function areaWindows(inLen, outLen) {
  const starts = new Int32Array(outLen);
  const ends = new Int32Array(outLen);
  for (let i = 0; i < outLen; i++) {
    starts[i] = Math.floor((i * inLen) / outLen);
    ends[i] = Math.ceil(((i + 1) * inLen) / outLen);
  }
  return { starts, ends };
}

/**
 * export/mtcnn.py's _prefix_sums along rows of a [C, H, W] planar image: prefix[c][k][x] = sum of the
 * first k rows of column x (float64, accumulated in order), stored [C, H + 1, W].
 */
export function rowPrefixSums(planar) {
  const [channels, height, width] = planar.dims;
  const src = planar.data;
  const prefix = new Float64Array(channels * (height + 1) * width);
  for (let c = 0; c < channels; c++) {
    const plane = c * height * width;
    const base = c * (height + 1) * width;
    for (let y = 0; y < height; y++) {
      const from = base + y * width;
      const to = from + width;
      const row = plane + y * width;
      for (let x = 0; x < width; x++) prefix[to + x] = prefix[from + x] + src[row + x];
    }
  }
  return prefix;
}

/**
 * area_resize: [C, H, W] -> [C, outH, outW] like torch interpolate(mode="area"): each output is
 * the mean of the input window it covers, along rows then columns. As in Python, the sums come
 * from float64 prefix sums accumulated in order, and only the final means are rounded to float32,
 * so the result matches numpy's bit for bit. rowPrefix (rowPrefixSums(planar)) lets the pyramid,
 * which resizes one image to many sizes, compute the full-size sums once.
 *
 * window [x0, y0, x1, y1] resizes that part of planar alone, as areaResize of the cropped planar image
 * would, through the whole image's rowPrefix: the same numbers when planar holds whole numbers (pixel
 * values), whose float64 sums are exact, so that every MTCNN crop of a photo shares one prefix sum.
 */
export function areaResize(planar, outH, outW, rowPrefix = rowPrefixSums(planar), window = null) {
  const [channels, height, width] = planar.dims;
  const [x0, y0, x1, y1] = window ?? [0, 0, width, height];
  const w = x1 - x0;
  const rows = areaWindows(y1 - y0, outH);
  const cols = areaWindows(w, outW);
  const out = new Float32Array(channels * outH * outW);
  const rowMeans = new Float64Array(outH * w);
  const rowPrefix1 = new Float64Array(w + 1);
  for (let c = 0; c < channels; c++) {
    const base = c * (height + 1) * width + x0;
    for (let i = 0; i < outH; i++) {
      const count = rows.ends[i] - rows.starts[i];
      const top = base + (y0 + rows.starts[i]) * width;
      const bottom = base + (y0 + rows.ends[i]) * width;
      for (let x = 0; x < w; x++) {
        rowMeans[i * w + x] = (rowPrefix[bottom + x] - rowPrefix[top + x]) / count;
      }
    }
    for (let i = 0; i < outH; i++) {
      for (let x = 0; x < w; x++) rowPrefix1[x + 1] = rowPrefix1[x] + rowMeans[i * w + x];
      for (let j = 0; j < outW; j++) {
        const count = cols.ends[j] - cols.starts[j];
        out[(c * outH + i) * outW + j] = (rowPrefix1[cols.ends[j]] - rowPrefix1[cols.starts[j]]) / count;
      }
    }
  }
  return { data: out, dims: [channels, outH, outW] };
}
