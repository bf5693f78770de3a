// What a photo file is, read from its first bytes before anything decodes it: its format and, for the
// formats whose header states it, its size in pixels. worker.js refuses a photo over the pixel limit from
// this alone (a PNG of a few hundred kilobytes can claim 30000 x 30000 pixels, 3.6 GB once decoded), and
// names the formats it recognises but that are no photo (SVG, PDF) or that the browser may not decode (HEIC).
//
// photoHeader(bytes) -> {format, width, height}
//   bytes: a Uint8Array of the file's start (HEADER_BYTES of it hold every header below, except a JPEG
//   with more metadata than that before its frame header);
//   format: "jpeg" | "png" | "gif" | "webp" | "avif" | "heic" | "svg" | "pdf", or null when not recognised;
//   width, height: the pixels the header states (before any EXIF rotation, which keeps their product), or
//   null where the format states none or its header lies past `bytes`.

export const HEADER_BYTES = 256 * 1024;

const ascii = (bytes, start, length) => String.fromCharCode(...bytes.subarray(start, start + length));
const u16be = (b, i) => (b[i] << 8) | b[i + 1];
const u16le = (b, i) => b[i] | (b[i + 1] << 8);
const u24le = (b, i) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16);
const u32be = (b, i) => ((b[i] << 24) >>> 0) + ((b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]);

function sized(format, width, height) {
  return width > 0 && height > 0 ? { format, width, height } : { format, width: null, height: null };
}

// JPEG: the segments up to the first frame header (SOF0-SOF15 less DHT, JPG and DAC), which holds the size.
function jpegSize(b) {
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) break; // not a segment boundary: damaged, leave the size unknown
    const marker = b[i + 1];
    if (marker === 0xff) { i += 1; continue; } // fill byte
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) { i += 2; continue; } // no length
    if (marker === 0xd9 || marker === 0xda) break; // end of image, or the scan data before any frame header
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) return i + 9 <= b.length ? sized('jpeg', u16be(b, i + 7), u16be(b, i + 5)) : sized('jpeg');
    i += 2 + u16be(b, i + 2);
  }
  return sized('jpeg');
}

function webpSize(b) {
  const chunk = ascii(b, 12, 4);
  if (chunk === 'VP8X' && b.length >= 30) return sized('webp', u24le(b, 24) + 1, u24le(b, 27) + 1);
  if (chunk === 'VP8L' && b.length >= 25 && b[20] === 0x2f) {
    const bits = (b[21] | (b[22] << 8) | (b[23] << 16) | (b[24] << 24)) >>> 0;
    return sized('webp', (bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
  }
  if (chunk === 'VP8 ' && b.length >= 30 && b[23] === 0x9d && b[24] === 0x01 && b[25] === 0x2a) {
    return sized('webp', u16le(b, 26) & 0x3fff, u16le(b, 28) & 0x3fff);
  }
  return sized('webp');
}

// ISO base media boxes in [start, end): [{type, start, end}] with start at the box's content.
function boxes(b, start, end) {
  const found = [];
  let i = start;
  while (i + 8 <= end) {
    let size = u32be(b, i);
    let header = 8;
    if (size === 1) { // a 64-bit size follows the type
      if (i + 16 > end) break;
      size = u32be(b, i + 8) * 2 ** 32 + u32be(b, i + 12);
      header = 16;
    } else if (size === 0) {
      size = end - i; // to the end of the file
    }
    if (size < header) break;
    found.push({ type: ascii(b, i + 4, 4), start: i + header, end: Math.min(i + size, end) });
    i += size;
  }
  return found;
}

const child = (b, parent, type, skip = 0) => boxes(b, parent.start + skip, parent.end).find((box) => box.type === type);

// HEIF (HEIC, AVIF): the largest image spatial extent ('ispe' in meta/iprp/ipco), so that a grid of tiles
// counts as the whole picture it makes.
function heifSize(b, format) {
  const meta = boxes(b, 0, b.length).find((box) => box.type === 'meta');
  const iprp = meta && child(b, meta, 'iprp', 4); // meta is a full box: 4 bytes of version and flags first
  const ipco = iprp && child(b, iprp, 'ipco');
  let best = sized(format);
  for (const box of ipco ? boxes(b, ipco.start, ipco.end) : []) {
    if (box.type !== 'ispe' || box.start + 12 > box.end) continue;
    const width = u32be(b, box.start + 4);
    const height = u32be(b, box.start + 8);
    if (best.width === null || width * height > best.width * best.height) best = sized(format, width, height);
  }
  return best;
}

const AVIF_BRANDS = new Set(['avif', 'avis']);
const HEIC_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'mif1', 'msf1']);

function ftypFormat(b) {
  const ftyp = boxes(b, 0, b.length)[0];
  const brands = [ascii(b, 8, 4)];
  for (let i = ftyp.start + 8; i + 4 <= ftyp.end; i += 4) brands.push(ascii(b, i, 4));
  if (brands.some((brand) => AVIF_BRANDS.has(brand))) return 'avif';
  if (brands.some((brand) => HEIC_BRANDS.has(brand))) return 'heic';
  return null;
}

function isSvg(b) {
  // The start as text, past a UTF-8 byte order mark (its three bytes, read one character each).
  const text = ascii(b, 0, Math.min(b.length, 1024)).replace(/^\u00ef\u00bb\u00bf/, '').trimStart();
  return text.startsWith('<') && /<svg[\s>]/i.test(text);
}

export function photoHeader(bytes) {
  const b = bytes;
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return jpegSize(b);
  if (b.length >= 8 && ascii(b, 0, 8) === '\x89PNG\r\n\x1a\n') {
    return b.length >= 24 && ascii(b, 12, 4) === 'IHDR' ? sized('png', u32be(b, 16), u32be(b, 20)) : sized('png');
  }
  if (b.length >= 6 && (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a')) {
    return b.length >= 10 ? sized('gif', u16le(b, 6), u16le(b, 8)) : sized('gif');
  }
  if (b.length >= 16 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WEBP') return webpSize(b);
  if (b.length >= 12 && ascii(b, 4, 4) === 'ftyp') {
    const format = ftypFormat(b);
    if (format) return heifSize(b, format);
  }
  if (b.length >= 5 && ascii(b, 0, 5) === '%PDF-') return sized('pdf');
  if (isSvg(b)) return sized('svg');
  return sized(null);
}
