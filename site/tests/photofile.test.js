import assert from 'node:assert/strict';
import { test } from 'node:test';

import { photoHeader } from '../js/photofile.js';

const text = (s) => Array.from(s, (c) => c.charCodeAt(0));
const u16be = (v) => [v >> 8, v & 0xff];
const u16le = (v) => [v & 0xff, v >> 8];
const u24le = (v) => [v & 0xff, (v >> 8) & 0xff, v >> 16];
const u32be = (v) => [v >>> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
const file = (...parts) => Uint8Array.from(parts.flat());
const box = (type, ...content) => {
  const body = content.flat();
  return [...u32be(8 + body.length), ...text(type), ...body];
};

test('a PNG states its size in IHDR, whatever it would take decoded', () => {
  const png = file(0x89, text('PNG\r\n\x1a\n'), u32be(13), text('IHDR'), u32be(30000), u32be(20000), [1, 0, 0, 0, 0]);
  assert.deepEqual(photoHeader(png), { format: 'png', width: 30000, height: 20000 });
  assert.deepEqual(photoHeader(png.subarray(0, 20)), { format: 'png', width: null, height: null });
});

test('a JPEG is read segment by segment to its frame header, past metadata and fill bytes', () => {
  const exif = [0xff, 0xe1, ...u16be(2 + 300), ...new Array(300).fill(0x45)];
  const quantisation = [0xff, 0xdb, ...u16be(2 + 65), ...new Array(65).fill(1)];
  const progressiveFrame = [0xff, 0xc2, ...u16be(17), 8, ...u16be(3024), ...u16be(4032), 3, ...new Array(9).fill(0)];
  const jpeg = file([0xff, 0xd8], exif, [0xff], quantisation, progressiveFrame, [0xff, 0xda]);
  assert.deepEqual(photoHeader(jpeg), { format: 'jpeg', width: 4032, height: 3024 });
  // A Huffman table (C4) is no frame header, even though its marker lies among theirs.
  const huffman = [0xff, 0xc4, ...u16be(2 + 20), ...new Array(20).fill(0)];
  const baseline = [0xff, 0xc0, ...u16be(17), 8, ...u16be(10), ...u16be(20), 3, ...new Array(9).fill(0)];
  assert.deepEqual(photoHeader(file([0xff, 0xd8], huffman, baseline)), { format: 'jpeg', width: 20, height: 10 });
  // Cut before the frame header, or scan data first: a JPEG of unknown size.
  assert.deepEqual(photoHeader(jpeg.subarray(0, 200)), { format: 'jpeg', width: null, height: null });
  assert.deepEqual(photoHeader(file([0xff, 0xd8], [0xff, 0xda, 0, 2], baseline)).width, null);
});

test('GIF and the three kinds of WebP header', () => {
  assert.deepEqual(photoHeader(file(text('GIF89a'), u16le(640), u16le(480), [0, 0, 0])),
    { format: 'gif', width: 640, height: 480 });
  const riff = (chunk, ...rest) => file(text('RIFF'), u32be(0), text('WEBP'), text(chunk), u32be(0), rest.flat());
  // Lossy: a key frame's start code, then 14-bit sizes.
  assert.deepEqual(photoHeader(riff('VP8 ', [0, 0, 0, 0x9d, 0x01, 0x2a], u16le(1200), u16le(800))),
    { format: 'webp', width: 1200, height: 800 });
  // Lossless: width - 1 and height - 1 in 14 bits each, after the 0x2f signature.
  const bits = (1199) | (799 << 14);
  assert.deepEqual(photoHeader(riff('VP8L', [0x2f, bits & 0xff, (bits >> 8) & 0xff, (bits >> 16) & 0xff, bits >>> 24])),
    { format: 'webp', width: 1200, height: 800 });
  // Extended: the canvas, width - 1 and height - 1 in 24 bits each.
  assert.deepEqual(photoHeader(riff('VP8X', [0, 0, 0, 0], u24le(29999), u24le(29999))),
    { format: 'webp', width: 30000, height: 30000 });
});

test('HEIC and AVIF by their brands, their size the largest image extent in meta/iprp/ipco', () => {
  const ispe = (w, h) => box('ispe', [0, 0, 0, 0], u32be(w), u32be(h));
  const meta = box('meta', [0, 0, 0, 0], box('hdlr', new Array(20).fill(0)),
    box('iprp', box('ipco', box('colr', text('nclx'), new Array(7).fill(0)), ispe(512, 512), ispe(4032, 3024))));
  const heic = file(box('ftyp', text('heic'), u32be(0), text('mif1heic')), meta, box('mdat', [1, 2, 3]));
  assert.deepEqual(photoHeader(heic), { format: 'heic', width: 4032, height: 3024 });
  const avif = file(box('ftyp', text('avif'), u32be(0), text('mif1miaf')), meta);
  assert.deepEqual(photoHeader(avif), { format: 'avif', width: 4032, height: 3024 });
  // An AVIF brand among the compatible ones wins over the generic mif1.
  const compatible = file(box('ftyp', text('mif1'), u32be(0), text('avifmiaf')));
  assert.deepEqual(photoHeader(compatible), { format: 'avif', width: null, height: null });
  // An MP4 video is no photo we know.
  assert.equal(photoHeader(file(box('ftyp', text('isom'), u32be(0), text('isomavc1')))).format, null);
});

test('SVG and PDF are recognised, other bytes are not', () => {
  const svg = file([0xef, 0xbb, 0xbf], text('<?xml version="1.0"?>\n<!-- a drawing -->\n<svg xmlns="x" width="9">'));
  assert.deepEqual(photoHeader(svg), { format: 'svg', width: null, height: null });
  assert.equal(photoHeader(file(text('  <SVG>'))).format, 'svg');
  assert.equal(photoHeader(file(text('<html><body>no svgs here</body></html>'))).format, null);
  assert.equal(photoHeader(file(text('%PDF-1.4\n'))).format, 'pdf');
  assert.deepEqual(photoHeader(file(text('Shopping list: masks, soap.'))), { format: null, width: null, height: null });
  assert.deepEqual(photoHeader(new Uint8Array(0)), { format: null, width: null, height: null });
});
