// Drawing on canvases: the photo with a numbered box and label per face, and a face crop with its
// Grad-CAM heatmap blended over it (pytorch-grad-cam's show_cam_on_image, via gradcam.js).
//
// drawPhoto(canvas, photo, faces, selected): photo {width, height, data RGB}; faces from analysePhoto;
//   selected: index of the face drawn highlighted (or -1).
// heatmapOverlay(face, manifest, {layer, classIndex, opacity}) -> RGB image of the crop's size;
//   opacity 0..1 is the heatmap's weight (the manifest's drawing.image_weight is 1 - the default 0.5).
// drawImage(canvas, image): an RGB or RGBA image onto a canvas of its size.
// drawLive(canvas, view, manifest, {heatmapLayer, opacity}): the webcam overlay for live.js's view
//   (boxes and labels of the tracked faces; heatmaps over their crops when heatmapLayer is set).
// colouredHeatmap(coarse, colormap, size) -> RGBA pixels of a coarse map upsampled and coloured.
// CLASS_COLOURS: box colour per class name.

import { overlayHeatmap, parseColormap, upsampleCam } from './gradcam.js';
import { toRGBA } from './imaging.js';

export const CLASS_COLOURS = { covered: '#1f9d45', incorrect: '#f08c00', uncovered: '#e0002b' };

let colormapCache = null;

function colormapOf(manifest) {
  if (!colormapCache || colormapCache.source !== manifest.drawing.colormap) {
    colormapCache = { source: manifest.drawing.colormap, table: parseColormap(manifest.drawing.colormap) };
  }
  return colormapCache.table;
}

export function drawImage(canvas, image) {
  canvas.width = image.width;
  canvas.height = image.height;
  const rgba = toRGBA(image);
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.data), image.width, image.height), 0, 0);
}

/** A box with its label above it (inside the frame), in the class's colour. */
function drawLabelledBox(context, box, cls, text, unit, frameWidth, lineWidth) {
  const [x1, y1, x2, y2] = box;
  const colour = CLASS_COLOURS[cls] ?? '#2f3e9e';
  context.lineWidth = lineWidth;
  context.strokeStyle = colour;
  context.strokeRect(x1, y1, x2 - x1, y2 - y1);
  const width = context.measureText(text).width + unit * 2;
  const height = unit * 9;
  const top = y1 - height >= 0 ? y1 - height : Math.max(0, y1);
  const left = Math.max(0, Math.min(x1, frameWidth - width));
  context.fillStyle = colour;
  context.fillRect(left, top, width, height);
  context.fillStyle = cls === 'incorrect' ? '#000000' : '#ffffff';
  context.fillText(text, left + unit, top + unit);
}

function labelFont(context, width, height) {
  const unit = Math.max(2, Math.round(Math.max(width, height) / 300));
  context.font = `600 ${unit * 7}px system-ui, sans-serif`;
  context.textBaseline = 'top';
  return unit;
}

export function drawPhoto(canvas, photo, faces, selected = -1) {
  drawImage(canvas, photo);
  const context = canvas.getContext('2d');
  const unit = labelFont(context, photo.width, photo.height);
  faces.forEach((face, i) => {
    // A face without a verdict (abstention.js) is boxed in the neutral colour, its label saying so.
    const text = face.cant_tell ? `${i + 1}: can’t tell`
      : `${i + 1}: ${face.class} ${Math.round(100 * face.probabilities[face.class])}%`;
    const cls = face.cant_tell ? null : face.class;
    drawLabelledBox(context, face.box, cls, text, unit, photo.width, i === selected ? unit * 2 : unit);
  });
}

/** A coarse map, upsampled to size x size and coloured, as opaque RGBA pixels. */
export function colouredHeatmap(coarse, colormap, size) {
  const cam = upsampleCam(coarse, { width: size, height: size }).data;
  const rgba = new Uint8ClampedArray(size * size * 4);
  for (let i = 0; i < cam.length; i++) {
    const entry = Math.trunc(Math.fround(255 * cam[i])) * 3;
    rgba.set(colormap.subarray(entry, entry + 3), i * 4);
    rgba[i * 4 + 3] = 255;
  }
  return rgba;
}

/**
 * The webcam overlay (live.js's view): a box and "track: class p%" per labelled face and, when
 * heatmapLayer is set, that layer's heatmap of the face's class blended over its crop box.
 */
export function drawLive(canvas, view, manifest, { heatmapLayer = null, opacity = 0.5 } = {}) {
  if (canvas.width !== view.width || canvas.height !== view.height) {
    canvas.width = view.width;
    canvas.height = view.height;
  }
  const context = canvas.getContext('2d');
  context.clearRect(0, 0, canvas.width, canvas.height);
  const unit = labelFont(context, view.width, view.height);
  for (const track of view.tracks) {
    if (!track.label) continue;
    if (heatmapLayer && track.heatmaps?.[heatmapLayer]) {
      const maps = track.heatmaps[heatmapLayer];
      const [, h, w] = maps.dims;
      const k = manifest.classes.indexOf(track.label.class);
      const coarse = { data: maps.data.subarray(k * h * w, (k + 1) * h * w), dims: [1, h, w] };
      const size = 64;
      const heat = new OffscreenCanvas(size, size);
      heat.getContext('2d').putImageData(new ImageData(colouredHeatmap(coarse, colormapOf(manifest), size), size, size), 0, 0);
      const [x1, y1, x2, y2] = track.crop_box;
      context.globalAlpha = opacity;
      context.drawImage(heat, x1, y1, x2 - x1, y2 - y1);
      context.globalAlpha = 1;
    }
    const { label } = track;
    const text = `${track.id}: ${label.class} ${Math.round(100 * label.probabilities[label.class])}%`;
    drawLabelledBox(context, track.box, label.class, text, unit, view.width, unit);
  }
}

export function heatmapOverlay(face, manifest, { layer, classIndex, opacity }) {
  const maps = face.heatmaps[layer];
  const [, h, w] = maps.dims;
  const coarse = { data: maps.data.subarray(classIndex * h * w, (classIndex + 1) * h * w), dims: [1, h, w] };
  const { width, height } = face.crop;
  const cam = upsampleCam(coarse, { width, height });
  return overlayHeatmap(face.crop, cam.data, colormapOf(manifest), 1 - opacity);
}
