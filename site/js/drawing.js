// Drawing on canvases: the photo with a numbered box and label per face, and a face crop with its
// Grad-CAM heatmap blended over it (pytorch-grad-cam's show_cam_on_image, via gradcam.js).
//
// drawPhoto(canvas, photo, faces, selected): photo {width, height, data RGB}; faces from analysePhoto;
//   selected: index of the face drawn highlighted (or -1).
// heatmapOverlay(face, manifest, {layer, classIndex, opacity}) -> RGB image of the crop's size;
//   opacity 0..1 is the heatmap's weight (the manifest's drawing.image_weight is 1 - the default 0.5).
// drawImage(canvas, image): an RGB or RGBA image onto a canvas of its size.
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

export function drawPhoto(canvas, photo, faces, selected = -1) {
  drawImage(canvas, photo);
  const context = canvas.getContext('2d');
  const unit = Math.max(2, Math.round(Math.max(photo.width, photo.height) / 300));
  context.font = `600 ${unit * 7}px system-ui, sans-serif`;
  context.textBaseline = 'top';
  faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box;
    const colour = CLASS_COLOURS[face.class] ?? '#2f3e9e';
    context.lineWidth = i === selected ? unit * 2 : unit;
    context.strokeStyle = colour;
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `${i + 1}: ${face.class} ${Math.round(100 * face.probabilities[face.class])}%`;
    const width = context.measureText(label).width + unit * 2;
    const height = unit * 9;
    const top = y1 - height >= 0 ? y1 - height : Math.max(0, y1);
    const left = Math.max(0, Math.min(x1, photo.width - width)); // keep the label inside the photo
    context.fillStyle = colour;
    context.fillRect(left, top, width, height);
    context.fillStyle = face.class === 'incorrect' ? '#000000' : '#ffffff';
    context.fillText(label, left + unit, top + unit);
  });
}

export function heatmapOverlay(face, manifest, { layer, classIndex, opacity }) {
  const maps = face.heatmaps[layer];
  const [, h, w] = maps.dims;
  const coarse = { data: maps.data.subarray(classIndex * h * w, (classIndex + 1) * h * w), dims: [1, h, w] };
  const { width, height } = face.crop;
  const cam = upsampleCam(coarse, { width, height });
  return overlayHeatmap(face.crop, cam.data, colormapOf(manifest), 1 - opacity);
}
