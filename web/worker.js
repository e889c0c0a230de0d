// The page's worker: runs the exported model (export.py --format onnx) with onnxruntime-web's
// WebAssembly backend, off the page's thread, and composes and encodes the cutouts.
//
// The model takes the photo as it is, uint8 RGB [1, H, W, 3] of any size, and returns its alpha,
// uint8 [1, H, W]: the squash to the network's input size, the network and the guided filter are
// all inside it, as in results.py. Nothing is fetched but the page's own files (the runtime and
// the model, once, when the page opens); the photos never leave this worker.
//
// Messages in:  {type: "load"}, {type: "cutout", id, file, background}, {type: "compose", id, background},
//               {type: "forget", id}
// Messages out: {type: "loading", loaded, total}, {type: "ready", threads}, {type: "load-failed", message},
//               {type: "stage", id, stage}, {type: "done", id, ...}, {type: "failed", id, message}

import * as ort from "./ort/ort.wasm.bundle.min.mjs";

const MODEL_URL = new URL("./model/person.onnx", import.meta.url);
const WASM_URL = new URL("./ort/ort-wasm-simd-threaded.wasm", import.meta.url);
// compose.background_image's blur: a Gaussian of sigma = the photo's longer side / 60, run here on
// the photo shrunk to this longer side (the blur is smooth, so nothing is lost) and enlarged again.
const BLUR_SIDE = 480;
// The longer side of the cutout the page shows (the downloads are at full size).
const PREVIEW_SIDE = 1024;

let session = null;
const photos = new Map(); // id -> {rgb, alpha, width, height}: kept for a new background

// ------------------------------------------------------------------------------------- loading

async function fetchWithProgress(urls) {
  // Every file's bytes, reporting the bytes loaded over all files together.
  const responses = await Promise.all(urls.map((url) => fetch(url)));
  for (const [i, response] of responses.entries()) {
    if (!response.ok) throw new Error(`${urls[i].pathname}: HTTP ${response.status} (was the page built with make web?)`);
  }
  const total = responses.reduce((sum, r) => sum + Number(r.headers.get("Content-Length") || 0), 0);
  let loaded = 0;
  return Promise.all(
    responses.map(async (response) => {
      const reader = response.body.getReader();
      const chunks = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        loaded += value.length;
        postMessage({ type: "loading", loaded, total });
      }
      const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let offset = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, offset);
        offset += chunk.length;
      }
      return bytes;
    }),
  );
}

async function load() {
  const [wasm, model] = await fetchWithProgress([WASM_URL, MODEL_URL]);
  // Several threads need the page to be cross-origin isolated (COOP and COEP headers), which a
  // plain static host does not send; without them onnxruntime-web runs on one thread.
  const threads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.wasmBinary = wasm;
  session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  postMessage({ type: "ready", threads });
}

// ------------------------------------------------------------------------------------- a cutout

async function decode(file) {
  // The pixels as stored, EXIF orientation applied, no colour management: what results.py reads
  // (OpenCV applies the orientation and ignores colour profiles).
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {
      imageOrientation: "from-image",
      premultiplyAlpha: "none",
      colorSpaceConversion: "none",
    });
  } catch {
    throw new Error("not an image this browser can read (or a truncated one)");
  }
  const { width, height } = bitmap;
  const context = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return { rgb, width, height };
}

async function alphaOf(rgb, width, height) {
  const image = new ort.Tensor("uint8", rgb, [1, height, width, 3]);
  try {
    const outputs = await session.run({ image });
    return outputs.alpha.data;
  } catch (error) {
    throw new Error(`the model failed on this ${width}x${height} photo (${error.message || error}); too large for the browser's memory?`);
  } finally {
    image.dispose();
  }
}

function boxBlur(pixels, width, height, radius) {
  // One pass of a (2 radius + 1) box along the rows then the columns, edges clamped, RGB floats in place.
  const line = new Float32Array(Math.max(width, height) * 3);
  const pass = (count, length, index) => {
    for (let k = 0; k < count; k++) {
      for (let i = 0; i < length; i++) {
        const p = index(k, i) * 3;
        line[i * 3] = pixels[p];
        line[i * 3 + 1] = pixels[p + 1];
        line[i * 3 + 2] = pixels[p + 2];
      }
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let i = -radius; i <= radius; i++) sum += line[Math.min(length - 1, Math.max(0, i)) * 3 + c];
        for (let i = 0; i < length; i++) {
          pixels[index(k, i) * 3 + c] = sum / (2 * radius + 1);
          sum += line[Math.min(length - 1, i + radius + 1) * 3 + c] - line[Math.max(0, i - radius) * 3 + c];
        }
      }
    }
  };
  pass(height, width, (y, x) => y * width + x);
  pass(width, height, (x, y) => y * width + x);
}

function resizeRgb(rgb, width, height, newWidth, newHeight) {
  // Bilinear resampling (pixel centres aligned, edges clamped), RGB in and out.
  const out = new Float32Array(newWidth * newHeight * 3);
  const sx = width / newWidth;
  const sy = height / newHeight;
  for (let y = 0; y < newHeight; y++) {
    const fy = Math.min(height - 1, Math.max(0, (y + 0.5) * sy - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(height - 1, y0 + 1);
    const wy = fy - y0;
    for (let x = 0; x < newWidth; x++) {
      const fx = Math.min(width - 1, Math.max(0, (x + 0.5) * sx - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(width - 1, x0 + 1);
      const wx = fx - x0;
      for (let c = 0; c < 3; c++) {
        const top = rgb[(y0 * width + x0) * 3 + c] * (1 - wx) + rgb[(y0 * width + x1) * 3 + c] * wx;
        const bottom = rgb[(y1 * width + x0) * 3 + c] * (1 - wx) + rgb[(y1 * width + x1) * 3 + c] * wx;
        out[(y * newWidth + x) * 3 + c] = top * (1 - wy) + bottom * wy;
      }
    }
  }
  return out;
}

function shrink(rgb, width, height, side) {
  // The photo shrunk (area average) so that its longer side is at most ``side``: [pixels, width, height].
  const scale = Math.min(1, side / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  const out = new Float32Array(w * h * 3);
  const count = new Float32Array(w * h);
  for (let y = 0; y < height; y++) {
    const row = Math.min(h - 1, Math.floor((y * h) / height));
    for (let x = 0; x < width; x++) {
      const o = row * w + Math.min(w - 1, Math.floor((x * w) / width));
      const p = (y * width + x) * 3;
      out[o * 3] += rgb[p];
      out[o * 3 + 1] += rgb[p + 1];
      out[o * 3 + 2] += rgb[p + 2];
      count[o] += 1;
    }
  }
  for (let o = 0; o < w * h; o++) for (let c = 0; c < 3; c++) out[o * 3 + c] /= count[o];
  return [out, w, h];
}

async function backgroundOf(background, photo) {
  // The new background at the photo's size, RGB (Float32Array or Uint8Array), or null (transparent).
  const { rgb, width, height } = photo;
  if (background.kind === "colour") {
    const out = new Uint8Array(width * height * 3);
    for (let i = 0; i < out.length; i += 3) out.set(background.colour, i);
    return out;
  }
  if (background.kind === "blur") {
    const [small, w, h] = shrink(rgb, width, height, BLUR_SIDE);
    const sigma = Math.max(width, height) / 60 * (w / width);
    // Three box passes make a Gaussian: each box of width b adds (b^2 - 1) / 12 to the variance.
    const radius = Math.max(1, Math.round((Math.sqrt(4 * sigma * sigma + 1) - 1) / 2));
    for (let i = 0; i < 3; i++) boxBlur(small, w, h, radius);
    return resizeRgb(small, w, h, width, height);
  }
  if (background.kind === "image") {
    // compose.background_image: scaled to cover the photo, then centre-cropped.
    const image = await decode(background.file);
    const scale = Math.max(height / image.height, width / image.width);
    const w = Math.max(width, Math.round(image.width * scale));
    const h = Math.max(height, Math.round(image.height * scale));
    const cover = resizeRgb(image.rgb, image.width, image.height, w, h);
    const top = Math.floor((h - height) / 2);
    const left = Math.floor((w - width) / 2);
    const out = new Float32Array(width * height * 3);
    for (let y = 0; y < height; y++) out.set(cover.subarray(((y + top) * w + left) * 3, ((y + top) * w + left + width) * 3), y * width * 3);
    return out;
  }
  return null;
}

function composed(photo, alpha, background) {
  // RGBA with the alpha (transparent background), or RGB on the background: photo a + background (1 - a).
  const { rgb, width, height } = photo;
  const n = width * height;
  if (background === null) {
    const rgba = new Uint8Array(n * 4);
    for (let i = 0; i < n; i++) {
      const a = alpha[i];
      if (a === 0) continue; // (0, 0, 0, 0), as results.py writes a fully transparent pixel
      rgba[i * 4] = rgb[i * 3];
      rgba[i * 4 + 1] = rgb[i * 3 + 1];
      rgba[i * 4 + 2] = rgb[i * 3 + 2];
      rgba[i * 4 + 3] = a;
    }
    return [rgba, 4];
  }
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = alpha[i] / 255;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.round(rgb[i * 3 + c] * a + background[i * 3 + c] * (1 - a));
  }
  return [out, 3];
}

function preview(pixels, width, height, channels) {
  // The cutout shrunk for the page to show (its longer side at most PREVIEW_SIDE, block averages),
  // as a bitmap: the page never decodes the full-size PNG, so its thread stays free.
  const step = Math.max(1, Math.ceil(Math.max(width, height) / PREVIEW_SIDE));
  const w = Math.ceil(width / step);
  const h = Math.ceil(height / step);
  const out = new Uint8ClampedArray(w * h * 4);
  const sums = new Float64Array(w * 4);
  const counts = new Float64Array(w);
  for (let y = 0; y < h; y++) {
    sums.fill(0);
    counts.fill(0);
    for (let yy = y * step; yy < Math.min(height, (y + 1) * step); yy++) {
      for (let x = 0; x < width; x++) {
        const p = (yy * width + x) * channels;
        const o = Math.floor(x / step);
        sums[o * 4] += pixels[p];
        sums[o * 4 + 1] += pixels[p + 1];
        sums[o * 4 + 2] += pixels[p + 2];
        sums[o * 4 + 3] += channels === 4 ? pixels[p + 3] : 255;
        counts[o] += 1;
      }
    }
    for (let x = 0; x < w; x++) for (let c = 0; c < 4; c++) out[(y * w + x) * 4 + c] = sums[x * 4 + c] / counts[x];
  }
  return createImageBitmap(new ImageData(out, w, h), { premultiplyAlpha: "none" });
}

// ------------------------------------------------------------------------------------- PNG

const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes, crc = 0xffffffff) {
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return crc;
}

function chunk(tag, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(tag), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, (crc32(out.subarray(4, 8 + data.length)) ^ 0xffffffff) >>> 0);
  return out;
}

async function encodePng(pixels, width, height, channels) {
  // A lossless 8-bit PNG (gray, RGB or RGBA), as images.encode_png writes it: every row with PNG's
  // Sub filter, deflated by the browser's own zlib (CompressionStream). A canvas would premultiply
  // the alpha and round the colours of the soft edge.
  const stride = width * channels;
  const rows = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    const o = y * (stride + 1);
    const p = y * stride;
    rows[o] = 1;
    for (let i = 0; i < channels; i++) rows[o + 1 + i] = pixels[p + i];
    for (let i = channels; i < stride; i++) rows[o + 1 + i] = pixels[p + i] - pixels[p + i - channels];
  }
  const stream = new Blob([rows]).stream().pipeThrough(new CompressionStream("deflate"));
  const deflated = new Uint8Array(await new Response(stream).arrayBuffer());
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, { 1: 0, 3: 2, 4: 6 }[channels], 0, 0, 0], 8);
  const signature = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return new Blob([signature, chunk("IHDR", header), chunk("IDAT", deflated), chunk("IEND", new Uint8Array())], {
    type: "image/png",
  });
}

// ------------------------------------------------------------------------------------- jobs

async function compose(id, background) {
  const photo = photos.get(id);
  postMessage({ type: "stage", id, stage: "composing" });
  let start = performance.now();
  const [pixels, channels] = composed(photo, photo.alpha, await backgroundOf(background, photo));
  const bitmap = await preview(pixels, photo.width, photo.height, channels);
  postMessage({ type: "preview", id, bitmap }, [bitmap]);
  const timings = { compose: (performance.now() - start) / 1000 };
  postMessage({ type: "stage", id, stage: "encoding" });
  start = performance.now();
  const cutout = await encodePng(pixels, photo.width, photo.height, channels);
  timings.png = (performance.now() - start) / 1000;
  return { cutout, timings };
}

async function cutout(id, file, background) {
  if (session === null) throw new Error("the model is not loaded");
  postMessage({ type: "stage", id, stage: "decoding" });
  let start = performance.now();
  const photo = await decode(file);
  const timings = { decode: (performance.now() - start) / 1000 };
  postMessage({ type: "stage", id, stage: "model", width: photo.width, height: photo.height });
  start = performance.now();
  photo.alpha = await alphaOf(photo.rgb, photo.width, photo.height);
  timings.model = (performance.now() - start) / 1000;
  photos.set(id, photo);
  const composition = await compose(id, background);
  Object.assign(timings, composition.timings);
  start = performance.now();
  const mask = await encodePng(photo.alpha, photo.width, photo.height, 1);
  timings.mask = (performance.now() - start) / 1000;
  return { cutout: composition.cutout, mask, width: photo.width, height: photo.height, timings };
}

// One job at a time, in the order they come: a photo's memory is freed before the next is read.
let queue = Promise.resolve();

self.onmessage = ({ data }) => {
  queue = queue.then(async () => {
    try {
      if (data.type === "load") await load();
      else if (data.type === "cutout") postMessage({ type: "done", id: data.id, ...(await cutout(data.id, data.file, data.background)) });
      else if (data.type === "compose") postMessage({ type: "done", id: data.id, ...(await compose(data.id, data.background)) });
      else if (data.type === "forget") photos.delete(data.id);
    } catch (error) {
      const message = error.message || String(error);
      postMessage(data.type === "load" ? { type: "load-failed", message } : { type: "failed", id: data.id, message });
    }
  });
};
