// Boxes that follow the faces between the worker's steps, on the page's thread. A step (live.js) finds
// and classifies the faces of one frame in a few hundred milliseconds on a modest CPU; the camera
// delivers a frame every 33 ms. In between, each face's patch, taken from the frame its box was found
// on, is searched for in every new frame around where it was last seen (sum of absolute differences
// over small gray frames), and the box moves with it. The next step's detection replaces the boxes,
// so a match never drifts for longer than one step; a face whose best match is poor stays put.
//
// grayFrame(image) -> {width, height, data: Uint8Array}: image {width, height, data} RGBA (an ImageData)
//   or RGB; luma as BT.601 integer weights.
// matchPatch(reference, current, rect, start, radius) -> {dx, dy, cost}: rect [x, y, w, h] integer pixels
//   of reference; the shift within radius of start ([dx, dy]) where current looks most like the patch,
//   cost the mean absolute difference there (0..255); null when no shift keeps the patch inside current.
// const follower = new Follower({radius, maxCost})
//   follower.reset(reference, tracks, scale): tracks as live.js's view ({box, crop_box, ...}, frame
//     pixels) found on the frame reference was shrunk from; scale: reference pixels per frame pixel.
//   follower.follow(current) -> the tracks, box and crop_box moved to where the faces are in current.

export const FOLLOW_WIDTH = 160; // the gray frames' width: 4 x 4 frame pixels per gray pixel at 640 px
export const SEARCH_RADIUS = 6; // gray pixels per frame, about 24 frame pixels at 640 px
export const MAX_COST = 40;
const PATCH_SAMPLES = 24; // at most this many samples along a side of a patch (the search cost is bounded)
const INSET = 0.15; // the patch is the box less this share on each side: the face, not the background

export function grayFrame({ width, height, data }) {
  const gray = new Uint8Array(width * height);
  const channels = data.length / gray.length;
  for (let i = 0, j = 0; i < gray.length; i++, j += channels) {
    gray[i] = (77 * data[j] + 150 * data[j + 1] + 29 * data[j + 2] + 128) >> 8;
  }
  return { width, height, data: gray };
}

export function matchPatch(reference, current, [x, y, w, h], [startX, startY], radius) {
  const step = Math.max(1, Math.ceil(Math.max(w, h) / PATCH_SAMPLES));
  const xs = [];
  const ys = [];
  for (let u = 0; u < w; u += step) xs.push(x + u);
  for (let v = 0; v < h; v += step) ys.push(y + v);
  let best = null;
  for (let dy = startY - radius; dy <= startY + radius; dy++) {
    if (y + dy < 0 || y + h + dy > current.height) continue;
    for (let dx = startX - radius; dx <= startX + radius; dx++) {
      if (x + dx < 0 || x + w + dx > current.width) continue;
      let sum = 0;
      for (const py of ys) {
        const from = py * reference.width;
        const to = (py + dy) * current.width + dx;
        for (const px of xs) sum += Math.abs(reference.data[from + px] - current.data[to + px]);
      }
      // Ties go to the smaller move, so a still face never jitters.
      const moved = Math.abs(dx) + Math.abs(dy);
      if (!best || sum < best.sum || (sum === best.sum && moved < best.moved)) best = { dx, dy, sum, moved };
    }
  }
  return best && { dx: best.dx, dy: best.dy, cost: best.sum / (xs.length * ys.length) };
}

/** The patch of a box: inset, in reference pixels, clipped to the frame; null when nothing is left. */
function patchOf(box, scale, width, height) {
  const [x1, y1, x2, y2] = box.map((v) => v * scale);
  const insetX = INSET * (x2 - x1);
  const insetY = INSET * (y2 - y1);
  const left = Math.max(0, Math.round(x1 + insetX));
  const top = Math.max(0, Math.round(y1 + insetY));
  const right = Math.min(width, Math.round(x2 - insetX));
  const bottom = Math.min(height, Math.round(y2 - insetY));
  return right - left >= 2 && bottom - top >= 2 ? [left, top, right - left, bottom - top] : null;
}

const shifted = (box, dx, dy) => box && [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy];

export class Follower {
  constructor({ radius = SEARCH_RADIUS, maxCost = MAX_COST } = {}) {
    this.radius = radius;
    this.maxCost = maxCost;
    this.reference = null;
    this.items = [];
  }

  reset(reference, tracks, scale) {
    this.reference = reference;
    this.scale = scale;
    this.items = tracks.map((track) => ({
      track, patch: patchOf(track.box, scale, reference.width, reference.height), shift: [0, 0],
    }));
  }

  follow(current) {
    return this.items.map((item) => {
      if (item.patch) {
        const match = matchPatch(this.reference, current, item.patch, item.shift, this.radius);
        if (match && match.cost <= this.maxCost) item.shift = [match.dx, match.dy];
      }
      const [dx, dy] = item.shift.map((v) => v / this.scale);
      return { ...item.track, box: shifted(item.track.box, dx, dy), crop_box: shifted(item.track.crop_box, dx, dy) };
    });
  }
}
